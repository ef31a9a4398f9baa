"""The deadlock behind vmapped groups that hung (docs/design.md §3.1), reduced to a few lines.

Under `jax.vmap`, a function with two independent QR factorizations (`jnp.linalg.qr`, what
the orthogonal init calls) is called repeatedly. Batched, each QR is one call of jaxlib's LAPACK
kernel. That kernel splits the batch over XLA's intra-op thread pool and waits for the pieces
from inside the pool; XLA runs the two QRs side by side; on a 2-thread pool both threads end up
waiting. `mcpo.networks.one_matrix_at_a_time` makes the vmapped QRs loop over the batch, one
matrix per call, so each runs inline.

Each trial is a fresh process, given `--timeout` seconds for `--calls` calls; a trial that runs
out of time is counted as hung (the deadlocked process uses no CPU). Variants:
  batched      plain jnp.linalg.qr under vmap (the code before 2026-12-06)
  one-by-one   the same through mcpo.networks.one_matrix_at_a_time (the fix)
  no-eigen     batched, XLA_FLAGS=--xla_cpu_multi_thread_eigen=false (another project's
               workaround for a similar hang: it does not help here)
  one-cpu      batched, the process pinned to one CPU (XLA's pool has one thread)

    python benchmarks/lapack_deadlock.py --trials 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = r"""
import sys
import jax, jax.numpy as jnp
from mcpo.networks import one_matrix_at_a_time

def two_qrs(x, y):
    return jnp.linalg.qr(x)[0].sum() + jnp.linalg.qr(y)[0].sum()

f = one_matrix_at_a_time(two_qrs) if sys.argv[1] == "one-by-one" else two_qrs
g = jax.jit(jax.vmap(f))
x = jax.random.normal(jax.random.PRNGKey(0), (4, 128, 128))
y = jax.random.normal(jax.random.PRNGKey(1), (4, 128, 128))
for i in range(int(sys.argv[2])):
    g(x + i, y).block_until_ready()
"""

VARIANTS = ("batched", "one-by-one", "no-eigen", "one-cpu")


def trial(variant: str, calls: int, timeout: float) -> tuple[bool, float]:
    """(finished, seconds) of one fresh process."""
    env = dict(os.environ)
    cmd = [sys.executable, "-c", CHILD, variant, str(calls)]
    if variant == "no-eigen":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false")
    if variant == "one-cpu":
        cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] + cmd
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{variant}: the child failed:\n{p.stderr}")
    return True, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    a = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, {a.trials} trials x {a.calls} calls, timeout {a.timeout:g} s")
    results = {v: [] for v in a.variants}
    for _ in range(a.trials):  # variants interleaved, so the machine's state is shared
        for v in a.variants:
            results[v].append(trial(v, a.calls, a.timeout))
    for v, rs in results.items():
        done = [s for ok, s in rs if ok]
        extra = f", finished in {min(done):.1f}-{max(done):.1f} s" if done else ""
        print(f"{v:11s} hung {len(rs) - len(done)} of {len(rs)}{extra}")


if __name__ == "__main__":
    main()
