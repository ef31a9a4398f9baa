"""How many threads XLA's CPU runtime computes with (docs/design.md §7, benchmarks/RESULTS.md §1.0).

JAX has no setting for it: the CPU client sizes its thread pools from the CPUs the process may
run on when the client is created (the first JAX computation). So `limit(n)` narrows this
thread's CPU affinity to n CPUs, creates the client, and gives every thread (the new ones
included) all the CPUs back: XLA's pools keep their smaller size, and no thread stays pinned
(two runs side by side, as a sweep's workers, are not put on one core).

Why: on the host (Gymnasium) path with 64x64 MLPs, each minibatch step is a few small matmuls
that one thread does as fast as two, and after the ~140 ms rollout waking the pool's sleeping
threads costs ~20 us per minibatch step: PPO's HalfCheetah update took 36-39 ms after a rollout
with the default pool and 29-30 ms with one thread (2 cores; bit-identical results). A
convolutional network (Atari) does use both cores, so the default keeps them there.

$MCPO_XLA_THREADS: a number, or 'auto' (the default): 1 for MLP networks on the host path, else
XLA's own choice. It is applied only if no JAX computation has run yet in the process, and only
in processes that run one training: `mcpo train` (via `PER_RUN_PROCESS`, read by the trainer)
and `mcpo bench`. The Python API, sweep workers and the test suite leave XLA's pool alone: such a
process may go on to train vmapped JAX groups, which would keep the one-thread pool, and the
test suite, doing just that, stopped once in a hung group (docs/design.md §3.1) after this was
first applied everywhere.
"""

from __future__ import annotations

import os

import jax

from mcpo.types import ConfigError

try:  # private: whether the CPU client exists yet (importing jax does not create it)
    from jax._src import xla_bridge as _xla_bridge
except ImportError:
    _xla_bridge = None

ENV = "MCPO_XLA_THREADS"
# Set by `mcpo train` (the CLI): this process runs one training, so the trainer may limit
# XLA's threads (`limit`) before its first computation.
PER_RUN_PROCESS = False


def requested(network_kind: str) -> int | None:
    """Threads for a host-path run of a policy of `network_kind` ('mlp', 'cnn', ...): from
    $MCPO_XLA_THREADS, or 'auto'; None means XLA's own choice."""
    n = _count_setting(ENV, "threads")
    if n is None:  # auto
        return 1 if network_kind == "mlp" else None
    return n


def _count_setting(env: str, what: str) -> int | None:
    """$env as a count >= 1 of `what`, or None for 'auto' (its default, or empty)."""
    raw = os.environ.get(env, "auto").strip().lower()
    if raw in ("", "auto"):
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"${env} must be 'auto' or a number of {what} >= 1, got {raw!r}")
    return n


def usable_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _backend_started() -> bool:
    try:
        return bool(_xla_bridge.backends_are_initialized())
    except AttributeError:  # another jax: assume it has started (do nothing)
        return True


def limit(n: int | None) -> bool:
    """Create JAX's CPU client with `n` compute threads; False (and nothing changed) if `n` is
    None, not fewer than the CPUs available, or JAX has already computed in this process."""
    if n is None or not hasattr(os, "sched_setaffinity"):
        return False
    cpus = os.sched_getaffinity(0)
    if n >= len(cpus) or _backend_started():
        return False
    narrow = set(sorted(cpus)[:n])
    os.sched_setaffinity(0, narrow)
    try:
        jax.devices("cpu")  # creates the client and its thread pools (with the narrow mask)
    finally:
        os.sched_setaffinity(0, cpus)
        for tid in os.listdir("/proc/self/task"):  # the threads just created: unpinned
            try:
                if os.sched_getaffinity(int(tid)) == narrow:
                    os.sched_setaffinity(int(tid), cpus)
            except OSError:  # a thread that has ended
                pass
    return True


# ---------------------------------------------------------------------------------------------
# CPU devices for a vmapped group of seeds (docs/design.md §3.1, benchmarks/RESULTS.md §7.1)
# ---------------------------------------------------------------------------------------------
# XLA's CPU runtime runs one program (a group's vmapped iteration) mostly on one core: its
# kernels are small and depend on each other, and a second thread only spins (5 PPO seeds on
# Pendulum, 2 cores: CPU/wall 1.33). Split into one CPU *device* per core, each with its share
# of the seeds, the programs run side by side (mcpo.jaxenv.runner.seed_layout: 5 seeds as
# 2 + 2 and one floating between the devices), 5 Pendulum seeds of PPO 90k -> 131k steps/s,
# MCPO 28k -> 42k as 3 + 2 (2026-12-06). `jax_num_cpu_devices` must be set before JAX's CPU client
# exists, like the thread limit above.
DEVICES_ENV = "MCPO_CPU_DEVICES"


def devices_requested(group_size: int) -> int | None:
    """CPU devices for a vmapped group of `group_size` seeds, from $MCPO_CPU_DEVICES: a number,
    or 'auto' (the default): one per CPU this process may use, in `mcpo train` processes
    (`PER_RUN_PROCESS`); elsewhere (the Python API, sweep workers, the test suite) None: the
    process's devices stay as JAX made them. Never more than one per seed."""
    n = _count_setting(DEVICES_ENV, "CPU devices")
    if n is None:  # auto
        if not PER_RUN_PROCESS:
            return None
        n = usable_cores()
    return min(n, max(1, group_size))


def split_devices(n: int | None) -> bool:
    """Give JAX's CPU client `n` devices; False (nothing changed) if `n` is None or 1, or JAX
    has already computed in this process."""
    if n is None or n <= 1 or _backend_started():
        return False
    jax.config.update("jax_num_cpu_devices", n)
    return True
