"""Paired timing of the MLP fast path, another commit's code against this checkout, in one
process: per env (Pendulum-v1, HalfCheetah-v5; 1 env x 2048, PPO 10 x 32), the two trainers take
turns iteration by iteration (alternating order), so load changes hit both alike.

    python benchmarks/ab_rollout.py --base main --iterations 15

The base commit is exported with `git archive` to a temporary directory as the package
`mcpo_base` (its imports renamed), next to `mcpo` from this checkout.
"""

from __future__ import annotations

import argparse
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

    for env in ("Pendulum-v1", "HalfCheetah-v5"):
        trainers = {}
        for name, cls, mk in (("base", Base, make_base), ("this", New, make_new)):
            d = root / f"run_{name}_{env}"
            d.mkdir()
            cfg = mk("ppo", env, total_timesteps=2048 * 200, progress=False,
                     tensorboard=False, run_dir=str(d))
            t = cls(cfg, d)
            t.collector.start(1, 0)
            trainers[name] = t
        times = {"base": [], "this": []}
        for it in range(ns.iterations):
            for name in (("base", "this") if it % 2 == 0 else ("this", "base")):
                t = trainers[name]
                t0 = time.perf_counter()
                actor = jax.tree.map(np.asarray, jax.device_get(t.state.params["actor"]))
                ro, _ = t.collector.collect(actor, np.random.default_rng([1, it, 1]))
                t1 = time.perf_counter()
                t.state, _ = t.update(t.state, t.prepare(t.state.params, ro))
                jax.block_until_ready(t.state)
                if it > 0:  # the first iteration compiles
                    times[name].append((t1 - t0, time.perf_counter() - t1))
        for name, r in times.items():
            r = np.array(r)
            print(f"{env:15s} {name}: rollout {np.median(r[:, 0]) / 2048 * 1e6:.1f} us/step, "
                  f"update {np.median(r[:, 1]) * 1e3:.1f} ms, "
                  f"{np.median(2048 / r.sum(1)):,.0f} steps/s (medians)")
        ratio = np.median(np.array(times["this"])[:, 0] / np.array(times["base"])[:, 0])
        print(f"{env:15s} paired rollout time, this / base: median {ratio:.3f}", flush=True)
        for t in trainers.values():
            t.close()
    print("load average", [round(x, 2) for x in os.getloadavg()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
