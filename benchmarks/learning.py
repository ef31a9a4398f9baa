"""Learning benchmark: several methods x seeds on one env, as in the paper's Table 1.

Each run is a separate `mcpo train` process (a failing run does not stop the others); runs go
to <out>/<label>/seed<k>. Re-running the same command skips finished runs (result.json present)
and resumes unfinished ones from their checkpoint. At the end a markdown table is printed (and
written to <out>/table.md): per method, mean +- std over seeds of

* train return: mean return of the last 100 training episodes at the end of training,
* eval return:  mean return of 10 deterministic evaluation episodes at the end.

Example (the numbers in benchmarks/RESULTS.md):

    python benchmarks/learning.py --env-id Pendulum-v1 --total-timesteps 1000000 \
        --seeds 1 2 3 4 5 --jobs 2 --out runs/pendulum-1m \
        --method "MCPO (N=5)|--algo mcpo --memory-size 5" \
        --method "PPO (clip 0.2)|--algo ppo --clip-coef 0.2"
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_one(run_dir: Path, args: list[str], log: Path) -> tuple[Path, int]:
    if (run_dir / "result.json").is_file():
        return run_dir, 0
    if (run_dir / "checkpoints" / "latest.ckpt").is_file():
        cmd = [sys.executable, "-m", "mcpo", "train", "--resume", str(run_dir), "--no-progress"]
    else:
        cmd = [sys.executable, "-m", "mcpo", "train", "--run-dir", str(run_dir), "--overwrite",
               "--no-progress", *args]
    with open(log, "a") as f:
        f.write(" ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    return run_dir, code


def summarize(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "n/a"
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))  # population std, as np.std
    return f"{m:.2f} ± {sd:.2f}"


def plot_curves(groups: dict[str, list[Path]], path: Path, title: str) -> None:
    """Mean +- std over seeds of each method's per-iteration episode return."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mcpo.logger import read_metrics

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, dirs in groups.items():
        curves = []
        for d in dirs:
            rows = read_metrics(d / "metrics.csv")
            steps = np.array([r["global_step"] for r in rows])
            rets = np.array([r["ep_return_mean"] for r in rows])
            ok = ~np.isnan(rets)
            curves.append(np.interp(steps, steps[ok], rets[ok]))
        n = min(len(c) for c in curves)
        y = np.stack([c[:n] for c in curves])
        m, sd = y.mean(0), y.std(0)
        ax.plot(steps[:n], m, label=f"{label} (n={len(curves)})")
        ax.fill_between(steps[:n], m - sd, m + sd, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (training, per iteration)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", required=True)
    p.add_argument("--total-timesteps", type=int, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--method", action="append", required=True,
                   help='"LABEL|mcpo train flags", repeatable')
    p.add_argument("--common", default="", help="flags added to every run")
    ns = p.parse_args(argv)

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for spec in ns.method:
        label, _, flags = spec.partition("|")
        for seed in ns.seeds:
            args = ["--env-id", ns.env_id, "--total-timesteps", str(ns.total_timesteps),
                    "--seed", str(seed), *shlex.split(flags), *shlex.split(ns.common)]
            slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
            jobs.append((label, seed, out / slug / f"seed{seed}", args))
    with ThreadPoolExecutor(ns.jobs) as pool:
        codes = list(pool.map(lambda j: run_one(j[2], j[3], out / "runs.log"), jobs))
    failed = [str(d) for d, c in codes if c != 0]

    lines = [f"{ns.env_id}, {ns.total_timesteps:,} steps, seeds {ns.seeds}", "",
             "| method | train return (last 100 episodes) | eval return (10 det. episodes) "
             "| runs | steps/s |", "|---|---|---|---|---|"]
    for spec in ns.method:
        label = spec.partition("|")[0]
        res = [json.loads((d / "result.json").read_text()) for lab, _, d, _ in jobs
               if lab == label and (d / "result.json").is_file()]
        sps = [r["sps"] for r in res if r.get("sps")]
        lines.append(f"| {label} | {summarize([r['final_return'] for r in res])} | "
                     f"{summarize([r['eval_return_mean'] for r in res])} | {len(res)} | "
                     f"{(sum(sps) / len(sps)) if sps else float('nan'):,.0f} |")
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    groups = {}
    for label, _, d, _ in jobs:
        if (d / "result.json").is_file():
            groups.setdefault(label, []).append(d)
    if groups:
        plot_curves(groups, out / "curves.png", f"{ns.env_id}, mean ± std over seeds")
        print(f"learning curves: {out / 'curves.png'}")
    if failed:
        print(f"\n{len(failed)} run(s) failed (see {out / 'runs.log'}): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
