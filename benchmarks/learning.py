"""Learning benchmark: several methods x seeds on one env, as in the paper's Table 1.

Each run is a separate `mcpo train` process (a failing run does not stop the others); runs go
to <out>/<label>/seed<k>. Re-running the same command skips finished runs (result.json present)
and resumes unfinished ones from their checkpoint. At the end a markdown table is printed (and
written to <out>/table.md): per method, mean +- std over seeds of

* train return: mean return of the last 100 training episodes at the end of training,
* eval return:  mean return of 10 deterministic evaluation episodes at the end.

With `--common "--backend gymnax"` (a pure-JAX backend) the seeds of a method train together
in one process, vmapped (`mcpo train --seeds ...`), into the same <out>/<label>/seed<k>
directories; finished groups are skipped, unfinished ones resumed together.

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


def run_group(run_dirs: list[Path], seeds: list[int], args: list[str],
              log: Path) -> list[tuple[Path, int]]:
    """One method's seeds as one vmapped `mcpo train --seeds` process (a JAX backend)."""
    if all((d / "result.json").is_file() for d in run_dirs):
        return [(d, 0) for d in run_dirs]
    if all((d / "checkpoints" / "latest.ckpt").is_file() for d in run_dirs):
        cmd = [sys.executable, "-m", "mcpo", "train", "--no-progress", "--resume",
               *map(str, run_dirs)]
    else:
        template = str(run_dirs[0].parent / "seed{seed}")
        cmd = [sys.executable, "-m", "mcpo", "train", "--run-dir", template, "--overwrite",
               "--no-progress", "--seeds", ",".join(map(str, seeds)), *args]
    with open(log, "a") as f:
        f.write(" ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    return [(d, code) for d in run_dirs]


def cell(values: list[float], mark: str) -> str:
    """mean ± sample std, bold for the best mean, <ins>underlined</ins> when Cohen's d against
    the best is below 0.5 (the paper's Table 1 convention)."""
    from mcpo.stats import mean_std

    m, sd = mean_std(values)
    if math.isnan(m):
        return "n/a"
    text = f"{m:.2f} ± {sd:.2f}"
    return {"best": f"**{text}**", "good": f"<ins>{text}</ins>"}.get(mark, text)


def results_table(title: str, groups: dict[str, list[dict]]) -> str:
    """Markdown table of per-method results (list of result.json dicts per method)."""
    from mcpo.stats import bootstrap_ci, iqm, rank_marks

    train = {k: [r["final_return"] for r in v] for k, v in groups.items()}
    ev = {k: [r["eval_return_mean"] for r in v] for k, v in groups.items()}
    m_train, m_eval = rank_marks(train), rank_marks(ev)
    lines = [title, "",
             "| method | train return (last 100 episodes) | eval return (10 det. episodes) "
             "| eval IQM | eval 95% CI of the mean | runs | steps/s |",
             "|---|---|---|---|---|---|---|"]
    for label, res in groups.items():
        sps = [r["sps"] for r in res if r.get("sps")]
        lo, hi = bootstrap_ci(ev[label])
        ci = "n/a" if math.isnan(lo) else f"[{lo:.1f}, {hi:.1f}]"
        lines.append(f"| {label} | {cell(train[label], m_train[label])} | "
                     f"{cell(ev[label], m_eval[label])} | {iqm(ev[label]):.2f} | {ci} | "
                     f"{len(res)} | {(sum(sps) / len(sps)) if sps else float('nan'):,.0f} |")
    lines += ["", "mean ± sample std (ddof 1) over runs; **bold**: best mean in the column; "
              "<ins>underlined</ins>: Cohen's d against the best below 0.5; IQM: mean of the "
              "middle runs (Agarwal et al. 2021); CI: percentile bootstrap over runs."]
    return "\n".join(lines)


def plot_curves(groups: dict[str, list[Path]], path: Path, title: str,
                window: int = 5) -> None:
    """Mean over seeds of each method's per-iteration training return (moving average of
    `window` iterations); left: the whole run, with a ± std band when there are at most 5
    methods; right: the last 80% of the run with the y axis zoomed on the final plateaus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mcpo.logger import read_metrics
    from mcpo.stats import moving_average

    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(13, 5.5))
    colors = plt.get_cmap("tab20").colors
    finals = []
    for i, (label, dirs) in enumerate(groups.items()):
        curves = []
        for d in dirs:
            rows = read_metrics(d / "metrics.csv")
            steps = np.array([r["global_step"] for r in rows])
            rets = np.array([r["ep_return_mean"] for r in rows])
            ok = ~np.isnan(rets)
            curves.append((steps, np.interp(steps, steps[ok], rets[ok])))
        # runs of one method share their iteration grid; methods may differ (batch sizes)
        n = min(len(c[1]) for c in curves)
        x = moving_average(curves[0][0][:n], window)
        y = np.stack([moving_average(c[1][:n], window) for c in curves])
        m, sd = y.mean(0), y.std(0)
        color, style = colors[(2 * i) % 20 + (2 * i) // 20], ("-", "--", ":")[i % 3]
        for a in (ax, zoom):
            a.plot(x, m, style, color=color, lw=1.2, label=f"{label} (n={len(curves)})")
        if len(groups) <= 5:
            ax.fill_between(x, m - sd, m + sd, color=color, alpha=0.15)
        tail = m[int(0.8 * len(m)):]
        finals.append(np.median(tail) if len(tail) else np.nan)
    ax.set_title(title)
    xmax = ax.get_xlim()[1]
    zoom.set_xlim(0.2 * xmax, xmax)
    f = [v for v in finals if np.isfinite(v)]
    if f:
        lo, hi = min(f), max(f)
        pad = max(0.25 * (hi - lo), 25.0)
        zoom.set_ylim(lo - 2 * pad, hi + pad)
    zoom.set_title("last 80%, zoomed on the final returns")
    for a in (ax, zoom):
        a.set_xlabel("environment steps")
        a.grid(alpha=0.3)
    ax.set_ylabel(f"training episode return (per iteration, mean over seeds, "
                  f"moving average {window})")
    zoom.legend(fontsize=7, ncol=2 if len(groups) > 6 else 1, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    grouped = "gymnax" in shlex.split(ns.common)  # --backend gymnax: seeds vmapped
    with ThreadPoolExecutor(ns.jobs) as pool:
        if grouped:
            per_method = {}
            for label, seed, d, args in jobs:
                per_method.setdefault(label, []).append((seed, d, args))
            # every job's args are [--env-id E --total-timesteps N --seed S, flags...]
            done = pool.map(lambda g: run_group([d for _, d, _ in g], [s for s, _, _ in g],
                                                g[0][2][:4] + g[0][2][6:], out / "runs.log"),
                            per_method.values())
            codes = [c for group in done for c in group]
        else:
            codes = list(pool.map(lambda j: run_one(j[2], j[3], out / "runs.log"), jobs))
    failed = [str(d) for d, c in codes if c != 0]

    groups = {}
    for spec in ns.method:
        label = spec.partition("|")[0]
        groups[label] = [json.loads((d / "result.json").read_text()) for lab, _, d, _ in jobs
                         if lab == label and (d / "result.json").is_file()]
    table = results_table(f"{ns.env_id}, {ns.total_timesteps:,} steps, seeds {ns.seeds}",
                          groups)
    print(table)
    (out / "table.md").write_text(table + "\n")
    dirs = {}
    for label, _, d, _ in jobs:
        if (d / "result.json").is_file():
            dirs.setdefault(label, []).append(d)
    if dirs:
        plot_curves(dirs, out / "curves.png", f"{ns.env_id}, {ns.total_timesteps:,} steps, seeds {ns.seeds}")
        print(f"learning curves: {out / 'curves.png'}")
    if failed:
        print(f"\n{len(failed)} run(s) failed (see {out / 'runs.log'}): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
