"""XLA's compute threads for the host path (mcpo.xla_threads): PPO's and MCPO's update time on
HalfCheetah-v5, each timed right after a real 2048-step rollout, as in training, with XLA's
default thread pool and with one thread; the two settings alternate, one process each (the
pool is sized once per process). Also checks that both give bit-identical parameters.

    python benchmarks/xla_threads.py [--rounds 3] [--iterations 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
import numpy as np
from mcpo import xla_threads
xla_threads.limit(xla_threads.requested("mlp"))  # $MCPO_XLA_THREADS decides
import jax
from mcpo.algos import ALGOS
from mcpo.envs import make_vec_env
from mcpo.networks import make_policy
from mcpo.presets import make_config
from mcpo.rollout import Collector, make_prepare_batch
iters = int(sys.argv[1])
vec = make_vec_env("HalfCheetah-v5", 1)
pol = make_policy(vec.single_observation_space, vec.single_action_space, (64, 64), "mlp")
out = {}
for algo in ("ppo", "mcpo"):
    cfg = make_config(algo, "HalfCheetah-v5")
    spec = ALGOS[algo]
    state = jax.jit(spec.init, static_argnums=(0, 1))(cfg, pol, jax.random.PRNGKey(0))
    col = Collector(vec, pol, num_steps=2048, gamma=0.99, norm_obs=True, norm_reward=True,
                    clip_obs=10.0, clip_reward=10.0)
    col.start(0, 0)
    prep = make_prepare_batch(pol, cfg.gamma, cfg.gae_lambda)
    upd = jax.jit(spec.make_update(cfg, pol))
    rng = np.random.default_rng(0)
    times = []
    for i in range(iters + 1):  # the first (compile) is left out
        ro, _ = col.collect(pol.host_params(state.params["actor"]), rng)
        t = time.perf_counter()
        state, stats = upd(state, prep(state.params, ro))
        jax.device_get(stats)
        times.append(time.perf_counter() - t)
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params)])
    out[algo] = {"update_ms": float(np.median(times[1:]) * 1e3),
                 "params_sha": __import__("hashlib").sha256(flat.tobytes()).hexdigest()[:16]}
out["threads"] = len(os.listdir("/proc/self/task"))  # of the process, XLA's pools included
print(json.dumps(out))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=10)
    a = ap.parse_args()
    rows = {"default": [], "1": []}
    for r in range(a.rounds):
        for mode in (("default", "1") if r % 2 == 0 else ("1", "default")):
            # as many threads as CPUs: mcpo.xla_threads.limit leaves XLA's own pool
            threads = "1" if mode == "1" else str(os.cpu_count() or 1)
            env = dict(os.environ, MCPO_XLA_THREADS=threads, MCPO_COMPILE_CACHE="0")
            out = subprocess.run([sys.executable, "-c", CHILD, str(a.iterations)], env=env,
                                 capture_output=True, text=True, check=True)
            rows[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(mode, rows[mode][-1], flush=True)
    for algo in ("ppo", "mcpo"):
        d = sorted(x[algo]["update_ms"] for x in rows["default"])
        o = sorted(x[algo]["update_ms"] for x in rows["1"])
        same = {x[algo]["params_sha"] for x in rows["default"] + rows["1"]}
        print(f"{algo}: update after a rollout, median over rounds: XLA default pool "
              f"{d[len(d) // 2]:.1f} ms, one thread {o[len(o) // 2]:.1f} ms "
              f"({o[len(o) // 2] / d[len(d) // 2]:.2f}x); parameters "
              f"{'bit-identical' if len(same) == 1 else 'DIFFER'} across all runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
