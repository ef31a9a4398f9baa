"""The report's figures (PNG), drawn from the runs' metrics.csv:

* learning curves: return vs env steps, one panel per env, each setting's mean over seeds with
  a 95% bootstrap confidence band, methods in fixed colours (settings of one method in line
  styles);
* MCPO's memory figures, each from whatever of its columns the runs logged (a figure whose
  columns are absent is left out and the report says so): the attended slot j* over training
  (the paper's Fig. 1c), alpha_t, the beta_max fraction and the two trust-region distances
  (Fig. 4 and Eq. 4), memory writes and old-policy updates on a timeline (Fig. 1a), and the
  returns of psi and theta_old where --eval-psi-every logged them (Fig. 1b);
* `mcpo plot`: any logged column of individual runs.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from mcpo.report.stats import bootstrap_mean_band, moving_average

ALGO_COLORS = {"mcpo": "#d62728", "ppo": "#1f77b4", "kl-adaptive": "#2ca02c",
               "kl-fixed": "#ff7f0e", "mdpo": "#9467bd", "vmpo": "#8c564b",
               "trgppo": "#e377c2", "trpo": "#7f7f7f", "mcpo-mean": "#bcbd22",
               "a2c": "#17becf", "acktr": "#393b79"}
# Chosen greedily to be far (RGB distance >= 90) from every ALGO_COLORS entry and from each
# other: a spare blue beside PPO's read as PPO in a 12-setting plot.
SPARE_COLORS = ["#0000f0", "#f000f0", "#90f0a8", "#7800f0", "#a80090", "#00f060",
                "#60f000", "#484800", "#f0c078", "#00f000", "#780030", "#60d860"]
STYLES = ["-", "--", ":", "-."]
GRID_POINTS = 200
DPI = 110
MCPO_ALGOS = ("mcpo", "mcpo-mean")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def method_colors(labels_algos: list[tuple[str, str]]) -> dict[str, str]:
    """label -> colour: a method's algorithm's fixed colour (the first label of each
    algorithm), further labels of the same algorithm from a spare palette, in order."""
    out, used, spare = {}, set(), iter(SPARE_COLORS * 4)
    for label, algo in labels_algos:
        if label in out:
            continue
        c = ALGO_COLORS.get(algo)
        if c is None or c in used:
            c = next(spare)
        out[label] = c
        used.add(c)
    return out


def _curve(run, key: str, window: int) -> tuple[np.ndarray, np.ndarray] | None:
    x = np.array(run.column("global_step"), float)
    y = np.array(run.column(key), float)
    ok = ~np.isnan(y)
    if ok.sum() < 2:
        return None
    y = np.interp(x, x[ok], y[ok])   # iterations without a finished episode
    w = min(window, len(y))
    return moving_average(x, w), moving_average(y, w)


def _on_grid(curves, grid):
    """Each (x, y) curve on the common x grid (NaN beyond a run's own range)."""
    return np.stack([np.where((grid >= x[0]) & (grid <= x[-1]), np.interp(grid, x, y), np.nan)
                     for x, y in curves])


def _panels(n: int, width: float = 5.2, height: float = 3.9):
    plt = _plt()
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(width * cols, 8.0), height * rows),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat[:n])


def _legend(ax, fontsize: float = 6, **kw) -> None:
    """A legend inside the axes, or to their right when it has many entries (it would
    cover the curves; _save's tight bounding box keeps it in the picture)."""
    if len(ax.get_legend_handles_labels()[0]) > 8:
        ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0)
    else:
        ax.legend(fontsize=fontsize, **kw)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return path


def learning_curves(panels: dict[str, dict[str, list]], colors: dict[str, str], path: Path,
                    title: str, key: str = "ep_return_mean", window: int = 5) -> Path:
    """panels: env title -> setting -> runs (each setting's runs share a label: run.label)."""
    plt, fig, axes = _panels(len(panels))
    for ax, (env, settings) in zip(axes, panels.items()):
        styles: dict[str, int] = {}
        for setting, runs in settings.items():
            curves = [c for c in (_curve(r, key, window) for r in runs) if c is not None]
            if not curves:
                continue
            lo_x = min(c[0][0] for c in curves)
            hi_x = max(c[0][-1] for c in curves)
            grid = np.linspace(lo_x, hi_x, GRID_POINTS)
            y = _on_grid(curves, grid)
            label = runs[0].label
            k = styles.setdefault(label, 0)
            styles[label] += 1
            color = colors.get(label, "black")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # points no run reaches
                m = np.nanmean(y, 0)
            ax.plot(grid, m, STYLES[k % len(STYLES)], color=color, lw=1.3,
                    label=f"{setting} (n={len(curves)})")
            if len(curves) > 1:
                lo, hi = bootstrap_mean_band(y, reps=1000)
                ax.fill_between(grid, lo, hi, color=color, alpha=0.13, lw=0)
        ax.set_title(env, fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(f"{key} (moving average of {window} iterations)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, ncol=1 if len(settings) <= 8 else 2, loc="best")
    fig.suptitle(f"{title}\n(mean over seeds, 95% bootstrap CI of the mean)", fontsize=10)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# MCPO's memory figures
# ----------------------------------------------------------------------------------------------
def _weights(run) -> np.ndarray | None:
    if not run.rows:
        return None
    n = sum(1 for k in run.rows[0] if k.startswith("attn_weights_"))
    if n == 0:
        return None
    return np.array([[r[f"attn_weights_{j}"] for j in range(n)] for r in run.rows], float)


def _series(run, what: str) -> tuple[np.ndarray, str] | None:
    """A per-iteration quantity of an MCPO run and the column(s) it comes from (None when the
    run did not log it)."""
    if run.has_column(what):
        return np.array(run.column(what), float), what
    w = _weights(run)
    if w is None:
        return None
    if what == "attn_weight_newest":
        return w[:, 0], "attn_weights_0"
    if what == "attn_entropy":
        p = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), 1)
        return h, "attn_weights_* (entropy of the mean attention vector)"
    if what == "attn_mean_age_frac":
        ages = np.arange(w.shape[1]) / max(w.shape[1] - 1, 1)
        return ((w * ages).sum(1) / np.maximum(w.sum(1), 1e-12),
                "attn_weights_* (attention-weighted age / (N - 1))")
    if what == "attn_age_frac":
        if not run.has_column("attn_argmax"):
            return None
        return (np.array(run.column("attn_argmax"), float) / max(w.shape[1] - 1, 1),
                "attn_argmax / (N - 1)")
    return None


def _mean_series(runs, what: str, window: int):
    """(x, mean over runs, source) of `what`, on the runs' common iterations."""
    got = [(np.array(r.column("global_step"), float), _series(r, what)) for r in runs]
    got = [(x, s) for x, s in got if s is not None]
    if not got:
        return None
    n = min(len(x) for x, _ in got)
    if n == 0:
        return None
    w = min(window, n)
    y = np.nanmean(np.stack([s[0][:n] for _, s in got]), 0) if len(got) > 1 else got[0][1][0][:n]
    return moving_average(got[0][0][:n], w), moving_average(y, w), got[0][1][1]


def _mcpo_grid(groups: dict[str, dict[str, list]], rows: list[tuple[str, list[str], str]],
               colors, path: Path, title: str, window: int, log_rows=()):
    """One column per env, one row per quantity; a row draws each of its candidate series
    that the runs logged, and is left out when none was. Returns (path, or None when nothing
    could be drawn; the columns used; the titles of the rows left out)."""
    envs = list(groups)
    data = []  # per row: {env: [(setting, label, candidate index, x, y, source)]}
    for _, candidates, _ in rows:
        per_env = {}
        for env in envs:
            got = []
            for setting, runs in groups[env].items():
                for c_i, what in enumerate(candidates):
                    s = _mean_series(runs, what, window)
                    if s is not None:
                        got.append((setting, runs[0].label, c_i, what, *s))
            per_env[env] = got
        data.append(per_env)
    keep = [i for i, d in enumerate(data) if any(d.values())]
    skipped = [rows[i][2] for i in range(len(rows)) if i not in keep]
    if not keep:
        return None, [], skipped
    plt = _plt()
    fig, axes = plt.subplots(len(keep), len(envs),
                             figsize=(max(5.2 * len(envs), 8.0), 3.0 * len(keep)),
                             squeeze=False)
    used = set()
    for row_i, i in enumerate(keep):
        ylabel, candidates, rtitle = rows[i]
        for j, env in enumerate(envs):
            ax = axes[row_i, j]
            styles: dict[str, int] = {}   # setting -> line style (its index in its method)
            per_label: dict[str, int] = {}
            for setting, label, c_i, what, x, y, src in data[i][env]:
                used.add(src)
                if setting not in styles:
                    styles[setting] = per_label.get(label, 0)
                    per_label[label] = styles[setting] + 1
                ax.plot(x, y, STYLES[styles[setting] % len(STYLES)],
                        color=colors.get(label, "black"), lw=1.4 if c_i == 0 else 0.9,
                        alpha=1.0 if c_i == 0 else 0.55,
                        label=f"{setting}: {what}" if len(candidates) > 1 else setting)
            if i in log_rows:
                ax.set_yscale("log")
            ax.set_title(f"{env}: {rtitle}", fontsize=9)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_xlabel("environment steps", fontsize=8)
            ax.grid(alpha=0.3)
            if ax.lines:
                _legend(ax)
    fig.suptitle(f"{title}\n(mean over seeds, moving average of {window} iterations)",
                 fontsize=10)
    return _save(fig, path), sorted(used), skipped


def mcpo_attention(groups, colors, path: Path, window: int = 5):
    """Fig. 1c: which memory slot the attention picks, and how peaked it is."""
    rows = [("j* (paper's index)", ["attn_jstar_newest_last", "attn_jstar_newest_first"],
             "attended slot j* (Fig. 1c), both index conventions"),
            ("slot / (N-1), 0 = newest", ["attn_age_frac", "attn_mean_age_frac"],
             "argmax slot and attention-weighted slot, by age"),
            ("writes since stored", ["attn_argmax_age"], "age of the attended policy"),
            ("weight / entropy (nats)", ["attn_weight_newest", "attn_entropy"],
             "weight of the newest slot; attention entropy")]
    return _mcpo_grid(groups, rows, colors, path, "MCPO attention over its memory", window)


def mcpo_alpha(groups, colors, path: Path, window: int = 5):
    """Fig. 4 and Eq. 4: alpha_t, the switching beta and the two trust-region distances."""
    rows = [("mean alpha_t", ["alpha"], "alpha_t, weight of psi's KL (Fig. 4)"),
            ("fraction of minibatches", ["beta_max_frac"], "beta = beta_max (Eq. 4)"),
            ("mean KL", ["d_old_theta", "d_old_psi"],
             "D(theta_old, theta) vs D(theta_old, psi)")]
    return _mcpo_grid(groups, rows, colors, path, "MCPO trust regions", window, log_rows=(2,))


def mcpo_psi_returns(groups, colors, path: Path):
    """Fig. 1b: returns of psi and theta_old, where --eval-psi-every logged them."""
    cols = ["eval_psi_return_det", "eval_old_return_det", "eval_psi_return_stoch",
            "eval_old_return_stoch"]
    envs = [e for e, s in groups.items() if any(r.has_column(cols[0]) for rs in s.values()
                                              for r in rs)]
    if not envs:
        return None, [], []
    plt, fig, axes = _panels(len(envs))
    for ax, env in zip(axes, envs):
        logged = [(st, [r for r in rs if r.has_column(cols[0])]) for st, rs in groups[env].items()]
        logged = [(st, rs) for st, rs in logged if rs]
        # one colour per setting (several MCPO settings share the method's colour elsewhere);
        # the line style tells psi from theta_old and deterministic from stochastic
        own = {st: plt.get_cmap("tab10")(i % 10) for i, (st, _) in enumerate(logged)}
        for setting, runs in logged:
            for c, style in zip(cols, ["-", "--", ":", "-."]):
                pts = []
                for r in runs:
                    x = np.array(r.column("global_step"), float)
                    y = np.array(r.column(c), float)
                    ok = ~np.isnan(y)
                    pts.append((x[ok], y[ok]))
                n = min(len(p[0]) for p in pts)
                if n == 0:
                    continue
                y = np.mean([p[1][:n] for p in pts], 0)
                who = "psi" if "psi" in c else "theta_old"
                ax.plot(pts[0][0][:n], y, style, marker="o", ms=3,
                        color=own[setting] if len(logged) > 1
                        else colors.get(runs[0].label, "black"),
                        label=f"{setting}: {who}, {'det.' if 'det' in c else 'stoch.'}")
        ax.set_title(f"{env}: returns of psi and theta_old (Fig. 1b)", fontsize=9)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return (mean over seeds)", fontsize=8)
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle("MCPO: the virtual policy psi vs the old policy theta_old", fontsize=11)
    return _save(fig, path), cols, []


def mcpo_timeline(runs_by_env: dict[str, object], path: Path, span: int = 40):
    """Fig. 1a on a per-iteration timeline of one run per env: memory writes in each
    iteration, theta_old's update at each iteration's end, and the attended policy's age."""
    envs = [(e, r) for e, r in runs_by_env.items() if r.has_column("memory_writes")]
    if not envs:
        return None, [], []
    plt = _plt()
    fig, axes = plt.subplots(len(envs), 1, figsize=(11, 2.8 * len(envs)), squeeze=False)
    used = {"memory_writes"}
    for ax, (env, run) in zip(axes[:, 0], envs):
        it = np.array(run.column("iteration"), float)
        writes = np.array(run.column("memory_writes"), float)
        mid = len(it) // 2
        lo, hi = max(0, mid - span // 2), min(len(it), mid + span // 2)
        it, writes = it[lo:hi], writes[lo:hi]
        ax.bar(it, writes, width=0.8, color="#d62728", alpha=0.7,
               label="policies written to M in the iteration")
        for x in it:
            ax.axvline(x + 0.5, color="#2ca02c", lw=0.6, alpha=0.6)
        ax.plot([], [], color="#2ca02c", lw=0.8, label="theta_old <- theta (end of iteration)")
        age = _series(run, "attn_argmax_age")
        if age is not None:
            ax2 = ax.twinx()
            ax2.plot(it, age[0][lo:hi], color="#e6b800", marker=".", lw=1,
                     label="age of the attended policy (writes)")
            ax2.set_ylabel("attended policy's age", fontsize=8)
            ax2.legend(fontsize=6, loc="upper right")
            used.add("attn_argmax_age")
        ax.set_title(f"{env}: {run.name}, iterations {int(it[0])}-{int(it[-1])} (Fig. 1a, "
                     f"per iteration: metrics.csv does not log single update steps)",
                     fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("writes", fontsize=8)
        ax.legend(fontsize=6, loc="upper left")
    return _save(fig, path), sorted(used), []


# ----------------------------------------------------------------------------------------------
# mcpo plot
# ----------------------------------------------------------------------------------------------
def plot_runs(runs: list, metric: str, x: str, path: Path, window: int, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for r in runs:
        xs = np.array(r.column(x), float)
        ys = np.array(r.column(metric), float)
        ok = ~np.isnan(ys)
        if ok.sum() == 0:
            continue
        xs, ys = xs[ok], ys[ok]
        w = min(window, len(ys))
        ax.plot(moving_average(xs, w), moving_average(ys, w), lw=1.3,
                label=f"{r.name} ({r.setting}, seed {r.seed})")
    ax.set_xlabel(x)
    ax.set_ylabel(metric + (f" (moving average of {window})" if window > 1 else ""))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
