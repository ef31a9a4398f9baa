"""What MCPO's memory and attention do during training, from the metrics.csv of MCPO runs.

Nine panels, each a mean over the runs of a group (a group is every run directory under one
`--group LABEL=DIR` directory that holds an MCPO metrics.csv, e.g. the seeds of one method of
`benchmarks/learning.py`):

  (a) the attended policy's age: age of the slot with the largest weight, in memory writes
      since that policy was stored (per minibatch, averaged over the iteration), and the
      attention-weighted mean age -- the unambiguous form of the paper's Fig. 1(c);
  (b) the paper's index j* = argmax_j f_phi(v)_j, 1-based, under both conventions (newest
      stored last: j* = fill - age; newest first: j* = age + 1), cf. "j* > 35" of N = 40;
  (c) attention entropy in nats (mean over minibatches; dotted: log N, uniform attention);
  (d) mean alpha_t, the weight of the psi trust region (paper App. Fig. 4);
  (e) psi vs theta_old: deterministic test returns of the last minibatch's virtual policy
      and of the iteration's sampling policy, from `--eval-psi-every` (paper Fig. 1(b));
  (f) fraction of minibatches with beta = beta_max (switching beta, Eq. 4);
  (g) D(theta_old, theta) after the update and D(theta_old, psi), log scale;
  (h) memory writes per iteration (Eq. 2);
  (i) the paired differences psi - theta_old and psi - theta (theta: after the update),
      deterministic (o) and stochastic (x): is psi better than what it is built between?

Panels whose columns a run lacks (runs made before these diagnostics) stay empty. The script
also prints (and with `--table FILE` writes) a markdown table per group: the second half of
training's mean of each diagnostic, and the mean paired test-return differences psi - theta_old
and psi - theta over the `--eval-psi-every` evaluations.

    python benchmarks/mcpo_insight.py --out insight.png \
        --group "N=5=runs/pendulum-1m/MCPO__N_5" --group "N=40=runs/pendulum-1m/MCPO__N_40"

The label is everything before the last '=' that is followed by a path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# (key in a loaded run, metrics.csv column)
COLUMNS = {"argmax_age": "attn_argmax_age", "jstar_last": "attn_jstar_newest_last",
           "jstar_first": "attn_jstar_newest_first", "entropy": "attn_entropy",
           "alpha": "alpha", "beta_max": "beta_max_frac", "d_theta": "d_old_theta",
           "d_psi": "d_old_psi", "writes": "memory_writes", "newest": "attn_weight_newest",
           "psi_det": "eval_psi_return_det", "psi_stoch": "eval_psi_return_stoch",
           "old_det": "eval_old_return_det", "old_stoch": "eval_old_return_stoch",
           "theta_det": "eval_theta_return_det", "theta_stoch": "eval_theta_return_stoch"}


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
        run = dict(step=np.array([r["global_step"] for r in rows], float), n_slots=n_slots,
                   mean_age=(w * np.arange(n_slots)).sum(1) / np.maximum(w.sum(1), 1e-12))
        for key, col in COLUMNS.items():
            if col in rows[0]:
                run[key] = np.array([r[col] for r in rows], float)
        runs.append(run)
    return runs


def plot(groups: dict[str, list[dict]], out: Path, title: str, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mcpo.stats import moving_average

    fig, axes = plt.subplots(3, 3, figsize=(17, 13))
    ax = dict(zip("abcdefghi", axes.flat))
    colors = plt.get_cmap("tab10").colors
    for i, (label, runs) in enumerate(groups.items()):
        n = min(len(r["step"]) for r in runs)
        c = colors[i % 10]
        x = moving_average(runs[0]["step"][:n], window)

        def mean(key):
            if not all(key in r for r in runs):
                return None
            return moving_average(np.mean([r[key][:n] for r in runs], 0), window)

        def line(panel, key, style="-", text=None):
            y = mean(key)
            if y is not None:
                ax[panel].plot(x, y, style, color=c, label=text or label)

        line("a", "argmax_age", text=f"{label}: argmax slot")
        line("a", "mean_age", "--", f"{label}: weighted mean")
        line("b", "jstar_last", text=f"{label}: newest last")
        line("b", "jstar_first", ":", f"{label}: newest first")
        line("c", "entropy")
        ax["c"].axhline(np.log(runs[0]["n_slots"]), color=c, ls=":", lw=0.8)
        line("d", "alpha")
        line("f", "beta_max")
        line("g", "d_theta", text=f"{label}: D(θ_old, θ)")
        line("g", "d_psi", "--", f"{label}: D(θ_old, ψ)")
        line("h", "writes")
        # (e), (i): evaluated every K iterations only; mean over runs at those iterations
        def evals(key):
            if not all(key in r for r in runs):
                return None, None
            y = np.mean([r[key][:n] for r in runs], 0)
            ok = np.isfinite(y)
            return (runs[0]["step"][:n][ok], y[ok]) if ok.any() else (None, None)

        for key, style, text in (("psi_det", "-", "ψ"), ("old_det", "--", "θ_old")):
            ex, ey = evals(key)
            if ex is not None:
                ax["e"].plot(ex, ey, style, color=c, marker="o" if key == "psi_det" else None,
                             ms=2, alpha=1.0 if key == "psi_det" else 0.6,
                             label=f"{label}: {text}")
        for ref, style in (("old", "-"), ("theta", ":")):
            for mode, mark in (("det", "o"), ("stoch", "x")):
                for r in runs:
                    if f"{ref}_{mode}" in r:
                        r[f"d_{ref}_{mode}"] = r[f"psi_{mode}"] - r[f"{ref}_{mode}"]
                ex, ey = evals(f"d_{ref}_{mode}")
                if ex is not None:
                    ax["i"].plot(ex, ey, style, color=c, marker=mark, ms=3, lw=0.8,
                                 label=f"{label}: ψ − {'θ_old' if ref == 'old' else 'θ'} "
                                       f"{mode}")
    labels = {
        "a": ("age (memory writes since stored)", "(a) age of the attended policy (Fig. 1c)"),
        "b": ("j* (1-based)", "(b) the paper's j* under both index conventions"),
        "c": ("nats (dotted: log N, uniform)", "(c) attention entropy"),
        "d": ("mean α_t", "(d) weight of the ψ trust region (Fig. 4)"),
        "e": ("test return (deterministic)", "(e) ψ vs θ_old (Fig. 1b; --eval-psi-every)"),
        "f": ("fraction of minibatches", "(f) β = β_max (switching β)"),
        "g": ("mean KL", "(g) trust-region distances"),
        "h": ("writes per iteration", "(h) memory writes (Eq. 2)"),
        "i": ("paired test-return difference", "(i) ψ − θ_old (solid) and ψ − θ (dotted)"),
    }
    for k, (ylabel, t) in labels.items():
        ax[k].set_ylabel(ylabel)
        ax[k].set_title(t)
        ax[k].set_xlabel("environment steps")
        ax[k].grid(alpha=0.3)
        if ax[k].lines:
            ax[k].legend(fontsize=6)
    ax["g"].set_yscale("log")
    ax["i"].axhline(0.0, color="k", lw=0.6)
    fig.suptitle(f"{title} (mean over runs, moving average of {window} iterations; (e), (i) "
                 f"unsmoothed)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def summary_table(groups: dict[str, list[dict]]) -> str:
    """Markdown: per group, mean ± std over runs of each run's second-half mean of the
    diagnostics, and of its mean psi - theta_old / psi - theta test-return differences."""
    from mcpo.stats import mean_std

    def cell(values, fmt):
        values = [v for v in values if np.isfinite(v)]
        if not values:
            return "n/a"
        m, sd = mean_std(values)
        return f"{m:{fmt}} ± {sd:{fmt}}" if len(values) > 1 else f"{m:{fmt}}"

    def late(r, key):
        return float(np.nanmean(r[key][len(r[key]) // 2:])) if key in r else float("nan")

    def diff(r, a, b, mode):
        ka, kb = f"{a}_{mode}", f"{b}_{mode}"
        if ka not in r or kb not in r:
            return float("nan")
        d = r[ka] - r[kb]
        return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")

    cols = [("attention entropy (nats)", lambda r: late(r, "entropy"), ".3f"),
            ("weight on newest", lambda r: late(r, "newest"), ".3f"),
            ("attended age (writes)", lambda r: late(r, "argmax_age"), ".2f"),
            ("j* newest last", lambda r: late(r, "jstar_last"), ".1f"),
            ("j* newest first", lambda r: late(r, "jstar_first"), ".1f"),
            ("mean α", lambda r: late(r, "alpha"), ".4f"),
            ("β = β_max", lambda r: late(r, "beta_max"), ".2f"),
            ("writes / iteration", lambda r: late(r, "writes"), ".1f"),
            ("ψ − θ_old det", lambda r: diff(r, "psi", "old", "det"), ".0f"),
            ("ψ − θ_old stoch", lambda r: diff(r, "psi", "old", "stoch"), ".0f"),
            ("ψ − θ det", lambda r: diff(r, "psi", "theta", "det"), ".0f"),
            ("ψ − θ stoch", lambda r: diff(r, "psi", "theta", "stoch"), ".0f")]
    lines = ["| group | runs | " + " | ".join(c[0] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for label, runs in groups.items():
        lines.append(f"| {label} | {len(runs)} | "
                     + " | ".join(cell([f(r) for r in runs], fmt) for _, f, fmt in cols) + " |")
    lines += ["", "Second half of training, mean ± std over runs; ψ − θ_old, ψ − θ: mean over "
              "the --eval-psi-every evaluations of the paired test-return difference "
              "(det: mean action, stoch: sampled)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", action="append", required=True, metavar="LABEL=DIR")
    p.add_argument("--out", required=True, help="output image (.png)")
    p.add_argument("--title", default="MCPO memory and attention")
    p.add_argument("--window", type=int, default=10, help="moving-average window, iterations")
    p.add_argument("--table", default=None, help="also write the summary table (markdown) here")
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
    table = summary_table(groups)
    print(table)
    if ns.table:
        Path(ns.table).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
