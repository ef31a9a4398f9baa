"""Paired timing of a training iteration (rollout, then batch and update), another commit's
code against this checkout, in one process: per env (default Pendulum-v1 and HalfCheetah-v5,
each with its family's preset: 1 env x 2048, PPO 10 x 32 there), the two trainers take turns
iteration by iteration (alternating order), so load changes hit both alike.

    python benchmarks/ab_rollout.py --base main --iterations 15
    python benchmarks/ab_rollout.py --base main --env-ids ALE/Breakout-v5 --iterations 9

The base commit is exported with `git archive` to a temporary directory as the package
`mcpo_base` (its imports renamed), next to `mcpo` from this checkout.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path


def export_base(ref: str, root: Path) -> None:
    archive = root / "base.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), ref, "mcpo"],
                   check=True, cwd=Path(__file__).resolve().parents[1])
    with tarfile.open(archive) as t:
        t.extractall(root / "x", filter="data")
    (root / "x" / "mcpo").rename(root / "mcpo_base")
    for p in (root / "mcpo_base").rglob("*.py"):
        s = p.read_text()
        s = re.sub(r"\b(from|import) mcpo(\.| import)", r"\1 mcpo_base\2", s)
        p.write_text(s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="main")
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--env-ids", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    ap.add_argument("--algo", default="ppo")
    ns = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mcpo_ab_"))
    export_base(ns.base, root)
    sys.path.insert(0, str(root))
    import jax
    import numpy as np

    from mcpo.presets import make_config as make_new
    from mcpo.trainer import Trainer as New
    from mcpo_base.presets import make_config as make_base  # type: ignore
    from mcpo_base.trainer import Trainer as Base  # type: ignore

    for env in ns.env_ids:
        trainers, takes_theta_old = {}, {}
        for name, cls, mk in (("base", Base, make_base), ("this", New, make_new)):
            d = root / f"run_{name}_{env.replace('/', '_')}"
            d.mkdir()
            cfg = mk(ns.algo, env, total_timesteps=2048 * 200, progress=False,
                     tensorboard=False, run_dir=str(d))
            t = cls(cfg, d)
            t.collector.start(1, 0)
            # the base commit's collector may predate the theta_old argument
            takes_theta_old[name] = "theta_old" in inspect.signature(
                t.collector.collect).parameters
            trainers[name] = t
        times = {"base": [], "this": []}
        for it in range(ns.iterations):
            for name in (("base", "this") if it % 2 == 0 else ("this", "base")):
                t = trainers[name]
                t0 = time.perf_counter()
                actor = t.policy.host_params(t.state.params["actor"])
                kw = {"theta_old": t.state.params} if takes_theta_old[name] else {}
                ro, _ = t.collector.collect(actor, np.random.default_rng([1, it, 1]), **kw)
                t1 = time.perf_counter()
                t.state, _ = t.update(t.state, t.prepare(t.state.params, ro))
                jax.block_until_ready(t.state)
                if it > 0:  # the first iteration compiles
                    times[name].append((t1 - t0, time.perf_counter() - t1))
        for name, r in times.items():
            r = np.array(r)
            n = cfg.batch_size
            print(f"{env:15s} {name}: rollout {np.median(r[:, 0]) / n * 1e6:.1f} us/step, "
                  f"update {np.median(r[:, 1]) * 1e3:.1f} ms, "
                  f"{np.median(n / r.sum(1)):,.0f} steps/s (medians)")
        this, base = np.array(times["this"]), np.array(times["base"])
        for i, part in ((0, "rollout"), (1, "batch + update")):
            print(f"{env:15s} paired {part} time, this / base: median "
                  f"{np.median(this[:, i] / base[:, i]):.3f}")
        print(f"{env:15s} paired iteration time, this / base: median "
              f"{np.median(this.sum(1) / base.sum(1)):.3f}", flush=True)
        for t in trainers.values():
            t.close()
    print("load average", [round(x, 2) for x in os.getloadavg()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
