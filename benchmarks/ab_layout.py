"""Paired A/B of two layouts of one group of seeds over the CPU devices, in one process:
`seed_layout`'s (floating seeds, two iterations in flight) against contiguous shards (5 seeds
on 2 cores: 3 + 2, one iteration in flight), alternating rounds of iterations after both are
compiled. Steady-state only: the group's jitted iterations as the trainer dispatches them,
without its logging (docs/design.md §3.1, benchmarks/RESULTS.md §7.1).

    python benchmarks/ab_layout.py [--algo mcpo] [--env-id Pendulum-v1] [--seeds 5]
        [--devices 2] [--iterations 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import deque

from mcpo import xla_threads


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="mcpo")
    p.add_argument("--env-id", default="Pendulum-v1")
    p.add_argument("--backend", default="gymnax")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--devices", type=int, default=xla_threads.usable_cores())
    p.add_argument("--iterations", type=int, default=20, help="per round (>= 4)")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    xla_threads.split_devices(a.devices)  # before JAX's CPU client exists
    import jax
    import mcpo
    from mcpo.jaxenv.runner import GroupRunner, Program, seed_layout, shard_bounds
    from mcpo.trainer import prepare_jax

    prepare_jax(compile_cache=False)
    tmp = tempfile.mkdtemp(prefix="ab-layout-")
    cfg = mcpo.make_config(a.algo, a.env_id, backend=a.backend, progress=False,
                           run_dir=f"{tmp}/{{seed}}", total_timesteps=10**7)
    cfgs = mcpo.api.group_configs(cfg, list(range(1, a.seeds + 1)))
    D = len(jax.devices())
    layouts = {"floating": seed_layout(a.seeds, D),
               "contiguous": [Program(x, y, k) for k, (x, y) in
                              enumerate(shard_bounds(a.seeds, D))]}
    runners = {name: GroupRunner(cfgs, layout=lay) for name, lay in layouts.items()}
    for name, lay in layouts.items():
        print(f"{name}: {[(p.b - p.a, 'float' if p.device is None else p.device) for p in lay]}")

    def run(r: GroupRunner, n: int) -> float:
        """Seconds per iteration, dispatched as GroupRunner._loop does: the interval between
        the 3rd and the n-th iteration's results over n - 3, both taken with the pipeline
        full (at the 1st result the floating layout's 2nd iteration has run since the start,
        which would favour it; counting to the end of what ran ahead, as a first version of
        this script did, disfavours it by one iteration). What ran ahead is waited for outside
        the timing, so it does not spill into the other layout's round."""
        pending, frontier, t = deque(), r.shards, 1
        for i in range(n):
            while len(pending) < r.depth:
                pending.append(r.iterate(frontier, t))
                frontier, t = [s for s, _ in pending[-1]], t + 1
            jax.device_get([m for _, m in pending.popleft()])
            if i == 2:
                t0 = time.perf_counter()
        elapsed = time.perf_counter() - t0
        jax.block_until_ready(frontier)
        r.shards = frontier
        return elapsed / (n - 3)

    for r in runners.values():
        run(r, 4)  # compile and warm up
    times = {name: [] for name in runners}
    for k in range(a.rounds):
        for name, r in (runners.items() if k % 2 == 0 else reversed(runners.items())):
            times[name].append(run(r, a.iterations))
        print(f"round {k + 1}: " + ", ".join(f"{n} {1e3 * t[-1]:.1f} ms/iteration"
                                            for n, t in times.items()), flush=True)
    steps = a.seeds * cfg.batch_size
    med = {n: statistics.median(t) for n, t in times.items()}
    for n, t in med.items():
        print(f"{n}: median {1e3 * t:.1f} ms per iteration, {steps / t:,.0f} steps/s in total")
    print(f"contiguous / floating time per iteration: {med['contiguous'] / med['floating']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
