"""Paired timing of the pure-JAX backend's jitted iteration and of its rollout alone, another
commit's code against this checkout, in one process (benchmarks/RESULTS.md §7.1): one seed
of `--algo` per env with `--backend gymnax`, the two versions' calls alternating (order
flipped every round), so that the machine's drift hits both alike.

    python benchmarks/ab_jax_iteration.py --base HEAD~1 --env-ids Pendulum-v1 CartPole-v1

The base commit is exported as the package `mcpo_base` (benchmarks/ab_rollout.export_base).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_rollout import export_base  # noqa: E402
from profile_update import group_after_two_iterations  # noqa: E402


def build(pkg, algo: str, env_id: str):
    """(jitted iteration, jitted rollout, state) of a one-seed group after two iterations."""
    import jax

    group = group_after_two_iterations(algo, env_id, 1, {}, tempfile.mkdtemp(), pkg=pkg)
    loop, over = group.functions(0)
    rollout = jax.jit(over(lambda s: loop.rollout(s)[0]))
    return group.step_function(0), rollout, group.shards[0]


def paired_ms(fa, xa, fb, xb, rounds: int) -> tuple[float, float]:
    import jax

    jax.block_until_ready(fa(xa))
    jax.block_until_ready(fb(xb))
    ta, tb = [], []
    for i in range(rounds):
        order = ((fa, xa, ta), (fb, xb, tb))
        for f, x, t in (order if i % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            jax.block_until_ready(f(x))
            t.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ta), 1e3 * statistics.median(tb)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="main", help="the commit to compare with (default: main)")
    p.add_argument("--env-ids", nargs="+", default=["Pendulum-v1", "CartPole-v1"])
    p.add_argument("--algo", default="ppo")
    p.add_argument("--rounds", type=int, default=30)
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ab-jax-"))
    export_base(a.base, root)
    sys.path.insert(0, str(root))
    import mcpo
    import mcpo_base

    for env_id in a.env_ids:
        (sa, ra, xa), (sb, rb, xb) = build(mcpo_base, a.algo, env_id), build(mcpo, a.algo, env_id)
        for name, fa, fb in (("iteration", sa, sb), ("rollout", ra, rb)):
            base, this = paired_ms(fa, xa, fb, xb, a.rounds)
            print(f"{env_id} {name}: base {base:.2f} ms, this {this:.2f} ms, "
                  f"this/base {this / base:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
