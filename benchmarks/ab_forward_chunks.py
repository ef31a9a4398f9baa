"""Paired timing of the Nature CNN's forward-only passes in chunks against one pass over the
whole batch (benchmarks/RESULTS.md §1.0, 2026-12-06): one process, one Breakout rollout per
iteration, then the batch preparation (theta_old on the rollout, GAE) and the jitted update of
both variants on it, alternating which goes first. The whole-batch variant is the same policy
with `forward_only` a plain call, as before the chunks.

    python benchmarks/ab_forward_chunks.py --algo ppo --iterations 7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

os.environ.setdefault("MCPO_COMPILE_CACHE", "0")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="ppo")
    p.add_argument("--env-id", default="ALE/Breakout-v5")
    p.add_argument("--iterations", type=int, default=7, help="the first one is left out")
    a = p.parse_args()

    import jax
    import numpy as np

    from mcpo.networks import NatureCNNActorCritic
    from mcpo.rollout import make_prepare_batch
    from profile_update import host_setup  # this directory's

    @dataclass(frozen=True)
    class WholeBatch(NatureCNNActorCritic):
        def forward_only(self, fn, obs):
            return fn(obs)

    cfg, kind, chunked, spec, state, col = host_setup(a.algo, a.env_id, {})
    if kind != "nature-cnn":
        sys.exit(f"{a.env_id}: not a Nature-CNN env (network {kind!r})")
    whole = WholeBatch(chunked.obs_shape, chunked.dist)
    variants = {name: (make_prepare_batch(pol, cfg.gamma, cfg.gae_lambda),
                       jax.jit(spec.make_update(cfg, pol)))
                for name, pol in (("chunks", chunked), ("whole", whole))}
    times = {name: [] for name in variants}
    rng = np.random.default_rng(0)
    for i in range(a.iterations):
        ro, _ = col.collect(chunked.host_params(state.params["actor"]), rng)
        order = list(variants) if i % 2 else list(variants)[::-1]
        for name in order:
            prepare, update = variants[name]
            fresh = ro._replace(obs=ro.obs.copy())  # a new host array, as each iteration has
            t0 = time.perf_counter()
            batch = jax.block_until_ready(prepare(state.params, fresh))
            t1 = time.perf_counter()
            new_state, _ = jax.block_until_ready(update(state, batch))
            t2 = time.perf_counter()
            if i:
                times[name].append((t1 - t0, t2 - t1))
            if name == "chunks":
                next_state = new_state
        state = next_state
    for name, t in times.items():
        t = np.asarray(t)
        print(f"{a.algo} {a.env_id} {name:>6}: prepare {np.median(t[:, 0]):.3f} s, update "
              f"{np.median(t[:, 1]):.3f} s (medians of {len(t)} iterations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
