"""mcpo.xla_threads: JAX's CPU client created with fewer compute threads (the affinity trick),
the process's own affinity restored, and the setting's errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from mcpo import xla_threads
from mcpo.types import ConfigError

PROBE = r"""
import os, sys
from mcpo import xla_threads
before = os.sched_getaffinity(0)
applied = xla_threads.limit(xla_threads.requested(sys.argv[1]))
import jax.numpy as jnp
float(jnp.ones(3).sum())
tasks = os.listdir("/proc/self/task")
pinned = sum(os.sched_getaffinity(int(t)) != before for t in tasks)
late = xla_threads.limit(1)  # JAX has computed: too late, nothing changes
print(applied, pinned, len(tasks), late)
"""


def probe(kind, **env):
    out = subprocess.run([sys.executable, "-c", PROBE, kind], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    applied, pinned, threads, late = out.stdout.split()
    return applied == "True", int(pinned), int(threads), late == "True"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2+ CPUs and Linux affinity")
def test_mlp_runs_get_one_xla_thread_and_every_thread_keeps_all_cpus():
    applied, pinned, threads_mlp, late = probe("mlp", MCPO_XLA_THREADS="auto")
    assert applied and pinned == 0 and not late
    # a CNN (Atari) keeps XLA's default pools, which have more threads
    applied, pinned, threads_cnn, late = probe("nature-cnn", MCPO_XLA_THREADS="auto")
    assert not applied and pinned == 0 and not late
    assert threads_mlp < threads_cnn
    # an explicit number applies to any network
    assert probe("nature-cnn", MCPO_XLA_THREADS="1")[0]


def test_the_setting_is_parsed_and_bad_values_are_refused(monkeypatch):
    monkeypatch.delenv(xla_threads.ENV, raising=False)
    assert xla_threads.requested("mlp") == 1
    assert xla_threads.requested("nature-cnn") is None
    monkeypatch.setenv(xla_threads.ENV, "3")
    assert xla_threads.requested("nature-cnn") == 3
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv(xla_threads.ENV, bad)
        with pytest.raises(ConfigError, match="MCPO_XLA_THREADS"):
            xla_threads.requested("mlp")
    assert xla_threads.limit(None) is False


RUN = r"""
import os, sys
import mcpo
from mcpo import xla_threads
from mcpo.trainer import Callback
xla_threads.PER_RUN_PROCESS = sys.argv[1] == "cli"  # what `mcpo train` sets
seen = []

class Threads(Callback):
    def on_train_start(self, trainer):
        seen.append(len(os.listdir("/proc/self/task")))

cfg = mcpo.TrainConfig(algo="ppo", env_id="Pendulum-v1", total_timesteps=256, num_steps=256,
                       num_minibatches=4, update_epochs=1, run_dir=sys.argv[2], progress=False,
                       tensorboard=False, eval_episodes=0)
mcpo.train(cfg, callbacks=[Threads()])
print(seen[0])
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2+ CPUs and Linux affinity")
def test_only_a_one_training_process_limits_the_threads(tmp_path):
    # `mcpo train` (the CLI sets PER_RUN_PROCESS) gets the smaller pool; the Python API, as
    # used by sweep workers and by tests, leaves XLA's default pool
    def threads(mode):
        out = subprocess.run([sys.executable, "-c", RUN, mode, str(tmp_path / mode)],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "MCPO_XLA_THREADS": "auto"})
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    assert threads("cli") < threads("api")


def test_cpu_devices_for_a_group_are_parsed_and_capped_at_one_per_seed(monkeypatch):
    monkeypatch.setattr(xla_threads, "PER_RUN_PROCESS", False)
    monkeypatch.delenv(xla_threads.DEVICES_ENV, raising=False)
    assert xla_threads.devices_requested(5) is None  # the API: JAX's devices as they are
    monkeypatch.setattr(xla_threads, "PER_RUN_PROCESS", True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert xla_threads.devices_requested(64) == cpus  # `mcpo train`: one device per CPU
    assert xla_threads.devices_requested(1) == 1
    monkeypatch.setenv(xla_threads.DEVICES_ENV, "3")
    assert xla_threads.devices_requested(5) == 3 and xla_threads.devices_requested(2) == 2
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv(xla_threads.DEVICES_ENV, bad)
        with pytest.raises(ConfigError, match=xla_threads.DEVICES_ENV):
            xla_threads.devices_requested(5)
    assert not xla_threads.split_devices(None) and not xla_threads.split_devices(1)


def test_a_group_is_split_into_contiguous_shards_of_nearly_equal_size():
    from mcpo.jaxenv.runner import shard_bounds

    assert shard_bounds(5, 2) == [(0, 3), (3, 5)]
    assert shard_bounds(4, 2) == [(0, 2), (2, 4)]
    assert shard_bounds(3, 8) == [(0, 1), (1, 2), (2, 3)]  # never an empty shard
    assert shard_bounds(3, 1) == [(0, 3)]
    assert shard_bounds(1, 2) == [(0, 1)]


def test_a_group_layout_balances_the_devices_with_floating_seeds():
    """seed_layout: equal shards when the devices divide the seeds; otherwise G // D seeds
    per device and the rest as one-seed programs that move from device to device, so that
    every device runs the same number of seed-iterations over D iterations."""
    from mcpo.jaxenv.runner import Program, seed_layout

    assert seed_layout(4, 2) == [Program(0, 2, 0), Program(2, 4, 1)]
    assert seed_layout(3, 8) == [Program(0, 1, 0), Program(1, 2, 1), Program(2, 3, 2)]
    assert seed_layout(3, 1) == [Program(0, 3, 0)]
    assert seed_layout(1, 2) == [Program(0, 1, 0)]
    assert seed_layout(5, 2) == [Program(0, 2, 0), Program(2, 4, 1), Program(4, 5, None, 0)]
    assert seed_layout(3, 2) == [Program(0, 1, 0), Program(1, 2, 1), Program(2, 3, None, 0)]
    for G, D in ((5, 2), (3, 2), (9, 2), (7, 3), (8, 3), (6, 4)):
        layout = seed_layout(G, D)
        seeds = [i for p in layout for i in range(p.a, p.b)]
        assert seeds == list(range(G))  # every seed once, in order
        work = np.zeros(D, int)  # seed-iterations per device over D iterations
        for t in range(1, D + 1):
            for p in layout:
                work[p.device_index(t, D)] += p.b - p.a
        assert (work == G).all(), (G, D, work)  # G per device over D iterations: balanced

