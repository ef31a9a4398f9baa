"""Where an update's time goes, kernel by kernel: `jax.profiler` traces calls of the jitted
update (host path: after real rollouts, as in training) or of the whole vmapped iteration
(`--backend gymnax`), and the XLA kernels are ranked by total time with their output shape
and the JAX operation they come from. The profiler adds ~1 us per kernel, so read the ranking
and the counts, not the absolute times. (This is how MCPO's memory transposes were found:
benchmarks/RESULTS.md §1.0, 2026-12-06.)

    python benchmarks/profile_update.py --algo mcpo --env-id HalfCheetah-v5 [--top 40]
    python benchmarks/profile_update.py --algo ppo --env-id Pendulum-v1 --backend gymnax --seeds 5
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("MCPO_COMPILE_CACHE", "0")


def traced(fn, args, calls: int, trace_dir: str):
    """Kernel name -> (total ns, count) over `calls` calls of `fn(*args)` (compiled first)."""
    import jax
    from jax._src.lib import _profile_data

    jax.block_until_ready(fn(*args))
    jax.profiler.start_trace(trace_dir)
    for _ in range(calls):
        jax.block_until_ready(fn(*args))
    jax.profiler.stop_trace()
    data = _profile_data.ProfileData.from_file(
        glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
    tot, cnt = collections.Counter(), collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):  # XLA's compute threads
                continue
            for ev in line.events:
                if not ev.name.startswith("ThunkExecutor"):
                    tot[ev.name] += ev.duration_ns
                    cnt[ev.name] += 1
    return tot, cnt


def describe(hlo: str) -> dict:
    """Kernel name -> 'shape  op_name' from the compiled HLO text."""
    out = {}
    for line in hlo.splitlines():
        m = re.match(r"  %(\S+) = (\S+?)(?:\{[^}]*\})? ", line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            out[m.group(1)] = f"{m.group(2)}  {op.group(1).split('/')[-1] if op else ''}"
    return out


def host_setup(algo: str, env_id: str, overrides: dict):
    """The host path's pieces as `mcpo train` builds them: (cfg, kind, policy, algorithm
    spec, initial state, a started Collector)."""
    import jax

    from mcpo import xla_threads
    from mcpo.algos import ALGOS
    from mcpo.envs import make_vec_env, network_kind
    from mcpo.presets import make_config
    from mcpo.networks import make_policy
    from mcpo.rollout import Collector

    cfg = make_config(algo, env_id, **overrides)
    vec = make_vec_env(env_id, cfg.num_envs)
    kind = network_kind(env_id, vec.single_observation_space)
    xla_threads.limit(xla_threads.requested(kind))  # as `mcpo train` runs it
    policy = make_policy(vec.single_observation_space, vec.single_action_space,
                         tuple(cfg.hidden_sizes), kind)
    spec = ALGOS[algo]
    state = jax.jit(spec.init, static_argnums=(0, 1))(cfg, policy, jax.random.PRNGKey(0))
    col = Collector(vec, policy, num_steps=cfg.num_steps, gamma=cfg.gamma,
                    norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward, clip_obs=cfg.clip_obs,
                    clip_reward=cfg.clip_reward)
    col.start(0, 0)
    return cfg, kind, policy, spec, state, col


def host_update(algo: str, env_id: str, overrides: dict):
    """The jitted update and its arguments after two real rollouts (the host path)."""
    import jax
    import numpy as np

    from mcpo.rollout import make_prepare_batch

    cfg, _, policy, spec, state, col = host_setup(algo, env_id, overrides)
    prep = make_prepare_batch(policy, cfg.gamma, cfg.gae_lambda)
    update = jax.jit(spec.make_update(cfg, policy))
    rng = np.random.default_rng(0)
    for _ in range(2):
        ro, _ = col.collect(policy.host_params(state.params["actor"]), rng)
        batch = prep(state.params, ro)
        state, _ = update(state, batch)
    return update, (state, batch)


def group_after_two_iterations(algo: str, env_id: str, seeds: int, overrides: dict, tmp: str,
                               pkg=None):
    """The GroupRunner of a `--backend gymnax` run of `seeds` seeds after two iterations
    (`pkg`: the mcpo package to train with; benchmarks/ab_jax_iteration.py passes a base
    commit's)."""
    if pkg is None:
        import mcpo as pkg

    class Grab(pkg.Callback):
        def on_train_start(self, trainer):
            self.group = getattr(trainer, "group", None)

    grab = Grab()
    cfg = pkg.make_config(algo, env_id, backend="gymnax", run_dir=f"{tmp}/r{{seed}}",
                          progress=False, tensorboard=False, eval_episodes=0, snapshots=0,
                          checkpoint_every=10**9, **overrides)
    cfg = cfg.replace(total_timesteps=2 * cfg.batch_size)
    pkg.train(cfg, seeds=list(range(seeds)), callbacks=[grab])
    return grab.group


def gymnax_iteration(algo: str, env_id: str, seeds: int, overrides: dict, tmp: str):
    """The group's jitted, vmapped iteration and its state after two iterations."""
    group = group_after_two_iterations(algo, env_id, seeds, overrides, tmp)
    return group.step_function(0), (group.shards[0],)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="mcpo")
    p.add_argument("--env-id", default="HalfCheetah-v5")
    p.add_argument("--backend", choices=("gymnasium", "gymnax"), default="gymnasium")
    p.add_argument("--seeds", type=int, default=1, help="vmapped seeds (gymnax)")
    p.add_argument("--calls", type=int, default=1, help="calls traced")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="config overrides, e.g. attn_slot_features=false")
    a = p.parse_args()
    overrides = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        overrides[k] = {"true": True, "false": False}.get(v.lower(), v)
        for cast in (int, float):
            try:
                overrides[k] = cast(v)
                break
            except ValueError:
                pass
    tmp = tempfile.mkdtemp(prefix="mcpo-profile-")
    if a.backend == "gymnax":
        fn, args = gymnax_iteration(a.algo, a.env_id, a.seeds, overrides, tmp)
    else:
        fn, args = host_update(a.algo, a.env_id, overrides)
    import jax
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    untraced = time.perf_counter() - t
    tot, cnt = traced(fn, args, a.calls, f"{tmp}/trace")
    names = describe(fn.lower(*args).compile().as_text())
    total = sum(tot.values())
    print(f"{a.algo} on {a.env_id} ({a.backend}, {a.seeds} seed(s)): one call {untraced * 1e3:.1f}"
          f" ms untraced; traced: {len(tot)} distinct kernels, {total / 1e6 / a.calls:.1f} ms of"
          f" kernel time per call")
    print(f"{'ms/call':>8} {'share':>6} {'count':>6}  kernel  [output shape  op]")
    for k, v in tot.most_common(a.top):
        print(f"{v / 1e6 / a.calls:8.2f} {v / total:6.1%} {cnt[k] // a.calls:6d}  {k}  "
              f"[{names.get(k, '')}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
