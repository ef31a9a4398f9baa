"""What MCPO's memory and attention do during training, from the metrics.csv of MCPO runs.

Four panels, each a mean over the runs of a group (a group is every run directory under one
`--group LABEL=DIR` directory that holds an MCPO metrics.csv, e.g. the seeds of one method of
`benchmarks/learning.py`):

  (a) attention: the slot receiving the most attention, j* = argmax_j f_phi(context)_j, as a
      fraction of the memory size (0 = the newest policy, 1 = the oldest), cf. the paper's
      Fig. 1(c); and the attention-weighted mean age of psi, sum_j w_j j / (N - 1);
  (b) mean alpha_t, the weight of the psi trust region in the theta step (paper App. Fig. 4);
  (c) fraction of minibatches with beta = beta_max (switching beta, Eq. 4);
  (d) D(theta_old, theta) after the update and D(theta_old, psi) (the two trust-region
      distances Eq. 4 compares), log scale.

    python benchmarks/mcpo_insight.py --out insight.png \
        --group "N=5=runs/pendulum-1m/MCPO__N_5" --group "N=40=runs/pendulum-1m/MCPO__N_40"

The label is everything before the last '=' that is followed by a path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def load_group(root: Path) -> list[dict[str, np.ndarray]]:
    """Per run under `root` (itself or its subdirectories): the columns we plot."""
    from mcpo.logger import read_metrics

    runs = []
    for path in sorted([root / "metrics.csv", *root.glob("*/metrics.csv")]):
        if not path.is_file():
            continue
        rows = read_metrics(path)
        if not rows or "attn_argmax" not in rows[0]:
            continue
        n_slots = sum(1 for k in rows[0] if k.startswith("attn_weights_"))
        w = np.array([[r[f"attn_weights_{j}"] for j in range(n_slots)] for r in rows])
        scale = max(n_slots - 1, 1)
        runs.append(dict(
            step=np.array([r["global_step"] for r in rows], float),
            argmax=np.array([r["attn_argmax"] for r in rows], float) / scale,
            mean_age=(w * np.arange(n_slots)).sum(1) / np.maximum(w.sum(1), 1e-12) / scale,
            alpha=np.array([r["alpha"] for r in rows], float),
            beta_max=np.array([r["beta_max_frac"] for r in rows], float),
            d_theta=np.array([r["d_old_theta"] for r in rows], float),
            d_psi=np.array([r["d_old_psi"] for r in rows], float),
        ))
    return runs


def plot(groups: dict[str, list[dict]], out: Path, title: str, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mcpo.stats import moving_average

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    colors = plt.get_cmap("tab10").colors
    for i, (label, runs) in enumerate(groups.items()):
        n = min(len(r["step"]) for r in runs)
        c = colors[i % 10]

        def mean(key):
            return moving_average(np.mean([r[key][:n] for r in runs], 0), window)

        x = moving_average(runs[0]["step"][:n], window)
        ax = axes[0, 0]
        ax.plot(x, mean("argmax"), color=c, label=f"{label}: argmax slot j*/(N-1)")
        ax.plot(x, mean("mean_age"), "--", color=c, label=f"{label}: attention-weighted age")
        axes[0, 1].plot(x, mean("alpha"), color=c, label=label)
        axes[1, 0].plot(x, mean("beta_max"), color=c, label=label)
        ax = axes[1, 1]
        ax.plot(x, mean("d_theta"), color=c, label=f"{label}: D(θ_old, θ)")
        ax.plot(x, mean("d_psi"), "--", color=c, label=f"{label}: D(θ_old, ψ)")
    axes[0, 0].set_ylabel("slot / (N-1)  (0 newest, 1 oldest)")
    axes[0, 0].set_title("(a) which past policies ψ attends to")
    axes[0, 1].set_ylabel("mean α_t")
    axes[0, 1].set_title("(b) weight of the ψ trust region")
    axes[1, 0].set_ylabel("fraction of minibatches")
    axes[1, 0].set_title("(c) β = β_max (switching β)")
    axes[1, 1].set_ylabel("mean KL")
    axes[1, 1].set_yscale("log")
    axes[1, 1].set_title("(d) trust-region distances")
    for ax in axes.flat:
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} (mean over runs, moving average of {window} iterations)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", action="append", required=True, metavar="LABEL=DIR")
    p.add_argument("--out", required=True, help="output image (.png)")
    p.add_argument("--title", default="MCPO memory and attention")
    p.add_argument("--window", type=int, default=10, help="moving-average window, iterations")
    ns = p.parse_args(argv)
    groups = {}
    for spec in ns.group:
        label, sep, root = spec.rpartition("=")
        if not sep or not label:
            p.error(f"--group {spec!r}: expected LABEL=DIR")
        runs = load_group(Path(root))
        if not runs:
            p.error(f"--group {spec!r}: no MCPO metrics.csv under {root}")
        groups[label] = runs
        print(f"{label}: {len(runs)} run(s) from {root}")
    plot(groups, Path(ns.out), ns.title, ns.window)
    print(f"written: {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
