"""`mcpo report DIR`: report.md and a self-contained report.html (+ figures/*.png) for the runs
under DIR: the paper-style tables, robust statistics beside them, the paper's own numbers
beside ours, learning curves, MCPO's memory figures and the provenance of every run."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from mcpo.provenance import code_identity
from mcpo.provenance import short as provenance_short
from mcpo.report import figures
from mcpo.report.document import Bullets, Code, Heading, Image, Para, Table, to_html, \
    to_markdown
from mcpo.report.paper import difference_in_std, paper_numbers, setting_matches
from mcpo.report.runs import FINAL_DOC, RunRecord, load_runs
from mcpo.report.stats import aggregate_iqm, bootstrap_ci, iqm, mean_std, \
    probability_of_improvement, probability_of_improvement_ci, rank_marks, \
    stratified_bootstrap_ci
from mcpo.rundir import last_code
from mcpo.types import ConfigError

FIG_DIR = "figures"
PACKAGES = ("mcpo", "jax", "jaxlib", "optax", "numpy", "gymnasium", "mujoco", "box2d",
            "ale-py", "minigrid", "ray", "wandb", "matplotlib")


# ----------------------------------------------------------------------------------------------
# Grouping and formatting
# ----------------------------------------------------------------------------------------------
def columns_of(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Table columns: one per env, or per (env, budget) when an env was run at several."""
    budgets: dict[str, set] = {}
    for r in runs:
        budgets.setdefault(r.env_id, set()).add(r.budget)
    out: dict[str, list[RunRecord]] = {}
    for r in runs:
        key = r.env_id if len(budgets[r.env_id]) == 1 else f"{r.env_id} @ {r.budget:,}"
        out.setdefault(key, []).append(r)
    return out


def settings_of(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for r in sorted(runs, key=lambda r: r.order):
        out.setdefault(r.setting, []).append(r)
    return out


def number(v: float, digits: int = 2, like: float | None = None) -> str:
    """v with `digits` decimals, or none when it (or `like`, the number it goes with) is
    1000 or more in size."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    big = abs(v if like is None or math.isnan(like) else like) >= 1000
    return f"{v:,.0f}" if big else f"{v:.{digits}f}"


def mean_cell(values: list[float], mark: str = "", expected_n: int | None = None) -> str:
    m, sd = mean_std(values)
    if math.isnan(m):
        return "—"
    text = f"{number(m)} ± {number(sd, like=m)}"
    n = sum(1 for v in values if not math.isnan(v))
    if expected_n is not None and n != expected_n:
        text += f" (n={n})"
    return {"best": f"**{text}**", "good": f"<ins>{text}</ins>"}.get(mark, text)


def _budget(runs: list[RunRecord]) -> str:
    b = sorted({r.budget for r in runs})
    return f"{b[0]:,}" if len(b) == 1 else ", ".join(f"{x:,}" for x in b)


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------
OPTIONAL_TABLES = (
    ("eval_sampled_return_mean", "evaluation of the final policy, sampled actions"),
    ("final_success_rate", "success rate of the last 100 training episodes (MiniGrid)"),
    ("eval_success_rate", "success rate, deterministic evaluation (MiniGrid)"),
    ("eval_sampled_success_rate", "success rate, sampled evaluation (MiniGrid)"),
)


def main_tables(finished: list[RunRecord]) -> list:
    cols = columns_of(finished)
    settings = settings_of(finished)
    expected = max((sum(1 for r in rs if r.setting == s) for rs in cols.values()
                    for s in settings), default=None)
    blocks = [Heading(2, "Results"), Para(FINAL_DOC)]
    tables = [("final performance (mean of the last 100 training episodes)", RunRecord.final),
              ("deterministic evaluation of the final policy", RunRecord.evaluation)]
    # MiniGrid (and any run evaluated with sampled actions): the same tables for these keys,
    # shown only when some run has them (a greedy MiniGrid policy that has not converged
    # loops, so its sampled evaluation and success rates say more than the greedy return)
    for key, title in OPTIONAL_TABLES:
        if any(not math.isnan(r.result_value(key)) for r in finished):
            tables.append((title, lambda r, k=key: r.result_value(k)))
    for title, get in tables:
        header = ["method (setting)"] + [f"{c} ({_budget(rs)} steps)" for c, rs in cols.items()]
        marks = {}
        for c, rs in cols.items():
            groups = {s: [get(r) for r in rs if r.setting == s] for s in settings}
            groups = {s: v for s, v in groups.items() if v}
            marks[c] = (groups, rank_marks(groups))
        rows = []
        for s in settings:
            row = [s]
            for c in cols:
                groups, mk = marks[c]
                row.append(mean_cell(groups[s], mk.get(s, ""), expected) if s in groups
                           else "—")
            rows.append(row)
        blocks += [Heading(3, f"Mean ± std over seeds: {title}"),
                   Table(header, rows, right=tuple(range(1, len(header))))]
    blocks.append(Para(f"Mean ± sample std (ddof 1) over seeds ({expected} per cell unless "
                       "n says otherwise). **Bold**: the best mean of the column; "
                       "<ins>underlined</ins>: Cohen's d against the best below 0.5 (the "
                       "paper's marks). Atari cells are human-normalized scores (%)."))
    return blocks


def robust_tables(finished: list[RunRecord], reference: str | None, reps: int) -> list:
    cols = columns_of(finished)
    settings = settings_of(finished)
    blocks = [Heading(2, "Robust statistics (Agarwal et al. 2021)")]
    header = ["method (setting)"] + list(cols)
    rows = []
    for s in settings:
        row = [s]
        for c, rs in cols.items():
            v = [r.final() for r in rs if r.setting == s]
            if not v:
                row.append("—")
                continue
            lo, hi = bootstrap_ci(v, "iqm", resamples=reps)
            row.append(f"{number(iqm(v))} [{number(lo)}, {number(hi)}]")
        rows.append(row)
    blocks += [Heading(3, "Interquartile mean of the final performance, 95% bootstrap CI"),
               Table(header, rows, right=tuple(range(1, len(header)))),
               Para("IQM: the mean of the middle 50% of runs (with 5 runs: of the middle 3); "
                    "the interval is the percentile bootstrap over runs. Few seeds make "
                    "these intervals wide: they say what these seeds support.")]
    # methods: the best setting of each method in each column (the paper's "best
    # hyperparameters"), scores normalized per column for aggregation
    labels = list(dict.fromkeys(r.label for r in sorted(finished, key=lambda r: r.order)))
    per_method: dict[str, list[list[float]]] = {lab: [] for lab in labels}
    raw: dict[str, list[list[float]]] = {lab: [] for lab in labels}
    chosen: dict[str, list[str]] = {lab: [] for lab in labels}
    for c, rs in cols.items():
        vals = [r.final() for r in rs if not math.isnan(r.final())]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        atari = all(r.is_atari for r in rs)
        for lab in labels:
            groups = {s: [r.final() for r in rs if r.setting == s]
                      for s in {r.setting for r in rs if r.label == lab}}
            if not groups:
                per_method[lab].append([])
                raw[lab].append([])
                continue
            best = max(groups, key=lambda s: mean_std(groups[s])[0]
                       if not math.isnan(mean_std(groups[s])[0]) else -math.inf)
            v = np.array(groups[best], float)
            raw[lab].append(list(v))
            scale = (hi - lo) if hi > lo else 1.0
            per_method[lab].append(list(v / 100.0 if atari else (v - lo) / scale))
            chosen[lab].append(f"{c}: {best}")
    rows = []
    for lab in labels:
        if not any(per_method[lab]):
            continue
        lo, hi = stratified_bootstrap_ci(per_method[lab], "iqm", reps=reps)
        rows.append([lab, number(aggregate_iqm(per_method[lab]), 3),
                     f"[{number(lo, 3)}, {number(hi, 3)}]",
                     str(sum(1 for t in per_method[lab] if t)), "; ".join(chosen[lab])])
    blocks += [Heading(3, "Aggregate over environments: IQM, stratified bootstrap"),
               Table(["method", "IQM (normalized)", "95% CI", "envs", "setting used"], rows,
                     right=(1, 2, 3)),
               Para("Each method at its best setting per environment (by mean final "
                    "performance). Scores are normalized per environment to 0 = the worst "
                    "and 1 = the best finished run in this report (Atari: human-normalized "
                    "score / 100), pooled over environments; the CI resamples runs within "
                    "each environment (rliable's stratified bootstrap).")]
    if reference is None:
        mc = [lab for lab in labels if any(r.algo == "mcpo" for r in finished
                                             if r.label == lab)]
        reference = mc[0] if mc else None
    if reference is not None and reference not in raw:
        raise ConfigError(f"--reference {reference!r} is not a method of this report "
                          f"({', '.join(labels)}).")
    if reference is not None and len(labels) > 1:
        rows = []
        for lab in labels:
            if lab == reference:
                continue
            p = probability_of_improvement(raw[reference], raw[lab])
            lo, hi = probability_of_improvement_ci(raw[reference], raw[lab], reps=reps)
            n = sum(1 for a, b in zip(raw[reference], raw[lab]) if a and b)
            rows.append([lab, number(p, 3), f"[{number(lo, 3)}, {number(hi, 3)}]", str(n)])
        blocks += [Heading(3, f"Probability of improvement of {reference} over each method"),
                   Table(["method Y", f"P({reference} > Y)", "95% CI", "envs"], rows,
                         right=(1, 2, 3)),
                   Para("P(X > Y) = the probability that a run of X beats a run of Y on the "
                        "same environment (ties count half), averaged over environments; "
                        "both at their best setting per environment; CI: stratified "
                        "bootstrap, X's and Y's runs resampled independently. 0.5 = no "
                        "difference.")]
    return blocks


def paper_tables(finished: list[RunRecord]) -> list:
    data = paper_numbers()
    blocks = []
    rows = []
    for tname in ("table1", "table2"):
        t = data["tables"][tname]
        for col, e in t["envs"].items():
            env_runs = [r for r in finished if r.env_id in e["env_ids"]]
            if not env_runs:
                continue
            for prow in t["rows"]:
                if col not in prow["cells"]:
                    continue
                pm, ps = prow["cells"][col]
                match = [r for r in env_runs if r.algo == prow["algo"]
                         and setting_matches(r, prow["setting"])]
                base = [f"{tname[:5].title()} {tname[5:]}", col, prow["method"],
                        f"{number(pm)} ± {number(ps, like=pm)}"]
                if not match:
                    rows.append(base + ["not run", "", "", "", "", ""])
                    continue
                groups = settings_of(match)
                best = max(groups, key=lambda s: mean_std([r.final() for r in groups[s]])[0])
                rs = groups[best]
                fm, _ = mean_std([r.final() for r in rs])
                em, _ = mean_std([r.evaluation() for r in rs])
                steps = _budget(rs)
                note = "" if {r.budget for r in rs} == {e["steps"]} else \
                    f" (paper: {e['steps']:,})"
                which = best if len(groups) == 1 else f"{best} (best of {len(groups)})"
                rows.append(base + [f"{which}, n={len(rs)}", steps + note,
                                    mean_cell([r.final() for r in rs]),
                                    number(difference_in_std(fm, pm, ps)),
                                    mean_cell([r.evaluation() for r in rs]),
                                    number(difference_in_std(em, pm, ps))])
    if rows:
        blocks += [Heading(2, "Next to the paper"),
                   Table(["table", "env", "paper's method", "paper mean ± std", "ours",
                          "our steps", "ours: final", "Δ/σ", "ours: eval", "Δ/σ"], rows,
                         right=(3, 5, 6, 7, 8, 9)),
                   Para("Every cell the paper reports for the environments in this report "
                        f"({data['source']}). Δ/σ = (ours - paper) / the paper's std: within "
                        "±1 is as close as the paper's own spread. The paper does not say "
                        "whether its numbers are training or evaluation returns, so both of "
                        "ours are shown. Where our budget differs from the paper's, the "
                        "comparison is only indicative.")]
        notes = [f"{r['method']}: {r['note']}" for t in ("table1", "table2")
                 for r in data["tables"][t]["rows"] if r.get("note")]
        if notes and any(r.env_id in e["env_ids"] for r in finished
                         for e in data["tables"]["table2"]["envs"].values()):
            blocks.append(Bullets(notes))
    atari = [r for r in finished if r.is_atari]
    if atari:
        blocks += atari_table(atari, data["tables"]["table3"])
    return blocks


def atari_table(runs: list[RunRecord], paper: dict) -> list:
    rows = []
    missing = [r.name for r in runs if math.isnan(r.best_normalized())]
    for s, rs in settings_of(runs).items():
        games = {}
        for r in rs:
            games.setdefault(r.env_id, []).append(r.best_normalized())
        per_game = [float(np.nanmean(v)) for v in games.values()
                    if not all(math.isnan(x) for x in v)]
        algo = rs[0].algo
        p = next((x for x in paper["rows"] if x["algo"] == algo and
                  setting_matches(rs[0], x["setting"])), None)
        rows.append([s, str(len(per_game)),
                     number(float(np.mean(per_game))) if per_game else "n/a",
                     number(float(np.median(per_game))) if per_game else "n/a",
                     f"{p['mean']:.2f} / {p['median']:.2f}" if p else "—"])
    blocks = [Heading(3, "Atari: human-normalized score of the best checkpoint (%)"),
              Table(["method (setting)", "games", "mean", "median", "paper mean / median"],
                    rows, right=(1, 2, 3, 4)),
              Para("Per game the mean over seeds of each run's best logged "
                   "`recent_hns` (the human-normalized score of the last 100 training episodes, "
                   "in %); then the mean and the median over games "
                   "(the paper's Table 3 rule).")]
    if missing:
        blocks.append(Para(f"{len(missing)} Atari run(s) logged no `recent_hns` "
                           f"column and are left out: {', '.join(missing[:5])}"
                           + (", ..." if len(missing) > 5 else "")))
    return blocks


# MCPO's diagnostics in the mechanism table: (column, header, digits, scale); each run is
# summarized by its mean over the second half of training (the attention has settled by then).
MECHANISM_COLUMNS = (
    ("attn_entropy", "attention entropy (nats)", 2, 1.0),
    ("attn_weight_newest", "weight on newest", 2, 1.0),
    ("attn_argmax_age", "argmax age (writes)", 1, 1.0),
    ("attn_jstar_newest_last", "j* (newest-last)", 1, 1.0),
    ("alpha", "alpha", 3, 1.0),
    ("beta_max_frac", "beta = beta_max (%)", 0, 100.0),
    ("memory_writes", "writes / iteration", 1, 1.0),
)


def late_half_mean(run: RunRecord, key: str) -> float:
    """The mean of a logged column over the second half of the run's iterations (NaN when the
    run did not log it)."""
    if not run.has_column(key):
        return math.nan
    vals = np.array(run.column(key), float)
    vals = vals[len(vals) // 2:]
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else math.nan


def psi_vs_old(run: RunRecord) -> tuple[float, float]:
    """The paper's Fig. 1b as two numbers: the fraction of the run's --eval-psi-every
    evaluations in which the stochastic psi scored above theta_old (ties count half), and
    the mean of psi's return minus theta_old's. NaN when the run did not evaluate psi."""
    if not (run.has_column("eval_psi_return_stoch") and run.has_column("eval_old_return_stoch")):
        return math.nan, math.nan
    psi = np.array(run.column("eval_psi_return_stoch"), float)
    old = np.array(run.column("eval_old_return_stoch"), float)
    ok = np.isfinite(psi) & np.isfinite(old)
    if not ok.any():
        return math.nan, math.nan
    d = psi[ok] - old[ok]
    return float(np.mean((d > 0) + 0.5 * (d == 0))), float(d.mean())


def _spread_cell(values: list[float], digits: int) -> str:
    """The mean over runs, and the range over runs when they differ."""
    x = [v for v in values if not math.isnan(v)]
    if not x:
        return "—"
    lo, hi, m = min(x), max(x), float(np.mean(x))
    cell = number(m, digits)
    return cell if number(lo, digits) == number(hi, digits) else \
        f"{cell} ({number(lo, digits)} to {number(hi, digits)})"


def mechanism_tables(mcpo: dict[str, dict[str, list[RunRecord]]]) -> list:
    """Per env, one row per MCPO-family setting: what its memory and attention did (late-half
    means of the logged diagnostics, mean over seeds and the range) and how psi scored
    against theta_old."""
    blocks = []
    for col, settings in mcpo.items():
        rows = []
        for setting, rs in settings.items():
            rs = [r for r in rs if r.rows]
            if not rs:
                continue
            cells = [setting, str(len(rs))]
            for key, _, digits, scale in MECHANISM_COLUMNS:
                cells.append(_spread_cell([late_half_mean(r, key) * scale for r in rs], digits))
            wins, diffs = zip(*(psi_vs_old(r) for r in rs))
            cells.append(_spread_cell([100 * w for w in wins], 0))
            cells.append(_spread_cell(list(diffs), 1))
            rows.append(cells)
        if rows:
            blocks.append(Heading(3, f"What the memory did: {col}"))
            blocks.append(Table(["setting", "runs", *(h for _, h, _, _ in MECHANISM_COLUMNS),
                                 "psi > theta_old (% of evals)", "psi - theta_old (return)"],
                                rows, right=tuple(range(1, 4 + len(MECHANISM_COLUMNS)))))
    if blocks:
        blocks.append(Para(
            "Each run's diagnostic is its mean over the second half of training; a cell is "
            "the mean over runs (the range over runs in brackets). Attention entropy: ln N = "
            "uniform (Mean psi; its argmax and j* then mean nothing), 0 = one slot; argmax "
            "age: how many memory writes ago the most-attended policy was stored; j*: the "
            "paper's Fig. 1c index, N = the newest slot; alpha: "
            "Eq. 5's weight of psi's KL term; writes: memory writes per iteration (Eq. 6). "
            "psi vs theta_old (the paper's Fig. 1b): over the run's --eval-psi-every "
            "evaluations, stochastic policies; — where a run did not log the column."))
    return blocks


def figure_blocks(finished: list[RunRecord], fig_dir: Path, rel: str, window: int) -> list:
    fig_dir.mkdir(parents=True, exist_ok=True)
    cols = columns_of(finished)
    labels = [(r.label, r.algo) for r in sorted(finished, key=lambda r: r.order)]
    colors = figures.method_colors(labels)
    blocks = [Heading(2, "Learning curves")]
    panels = {c: settings_of(rs) for c, rs in cols.items()}
    # the best setting of each method per env, then every setting
    best_panels = {}
    for c, settings in panels.items():
        by_label: dict[str, tuple[str, float]] = {}
        for s, rs in settings.items():
            m = mean_std([r.final() for r in rs])[0]
            lab = rs[0].label
            if lab not in by_label or (not math.isnan(m) and m > by_label[lab][1]):
                by_label[lab] = (s, m)
        best_panels[c] = {s: settings[s] for s, _ in by_label.values()}
    p = figures.learning_curves(best_panels, colors, fig_dir / "curves.png",
                                "Learning curves, each method at its best setting",
                                window=window)
    blocks.append(Image(f"{rel}/{p.name}", "Training episode return vs environment steps, "
                        "each method at its best setting (by final performance) per env: "
                        "mean over seeds, 95% bootstrap CI band."))
    if any(len(s) > len(best_panels[c]) for c, s in panels.items()):
        p = figures.learning_curves(panels, colors, fig_dir / "curves_all.png",
                                    "Learning curves, every setting", window=window)
        blocks.append(Image(f"{rel}/{p.name}", "Every setting (line styles: settings of "
                            "one method)."))
    mcpo = {c: {s: rs for s, rs in settings_of([r for r in rs_ if r.algo in
                                                 figures.MCPO_ALGOS]).items()}
            for c, rs_ in cols.items()}
    mcpo = {c: g for c, g in mcpo.items() if g}
    if not mcpo:
        return blocks
    blocks.append(Heading(2, "MCPO's memory and attention"))
    blocks.extend(mechanism_tables(mcpo))
    notes = []
    drawn = [("mcpo_attention.png", figures.mcpo_attention,
              "Which memory slot the attention picks over training (the paper's Fig. 1c), "
              "the weight of the newest slot and the attention's entropy.",
              "attn_jstar_newest_last / attn_argmax / attn_weights_* / attn_argmax_age / "
              "attn_entropy / attn_weight_newest"),
             ("mcpo_alpha.png", figures.mcpo_alpha,
              "alpha_t (the weight of psi's KL term, the paper's Fig. 4), the fraction of "
              "minibatches with beta = beta_max, and the two trust-region distances Eq. 4 "
              "compares.", "alpha / beta_max_frac / d_old_theta / d_old_psi")]
    for fname, fn, caption, cols_needed in drawn:
        path, used, skipped = fn(mcpo, colors, fig_dir / fname, window)
        if path is None:
            notes.append(f"{fname}: not drawn, the MCPO runs logged none of {cols_needed}.")
            continue
        blocks.append(Image(f"{rel}/{fname}", f"{caption} From: {', '.join(used)}."))
        if skipped:
            notes.append(f"{fname}: panels left out because no run logged their columns: "
                         f"{'; '.join(skipped)}.")
    first = {c: min((r for rs in g.values() for r in rs if r.algo == "mcpo"),
                    key=lambda r: (r.order, r.seed), default=None) for c, g in mcpo.items()}
    first = {c: r for c, r in first.items() if r is not None}
    path, used, _ = figures.mcpo_timeline(first, fig_dir / "mcpo_timeline.png")
    if path is None:
        notes.append("mcpo_timeline.png: not drawn, no run logged memory_writes.")
    else:
        blocks.append(Image(f"{rel}/mcpo_timeline.png", "Memory writes and old-policy "
                            "updates on a timeline (the paper's Fig. 1a), one run per env, 40 "
                            f"iterations from the middle of training. From: {', '.join(used)}."))
    path, used, _ = figures.mcpo_psi_returns(mcpo, colors, fig_dir / "mcpo_psi_returns.png")
    if path is None:
        notes.append("mcpo_psi_returns.png (the paper's Fig. 1b, the returns of psi and "
                     "theta_old): not drawn, no run logged eval_psi_return_det (train with "
                     "--eval-psi-every K).")
    else:
        blocks.append(Image(f"{rel}/mcpo_psi_returns.png", "Returns of the virtual policy "
                            "psi and of theta_old at the logged evaluations (the paper's "
                            f"Fig. 1b). From: {', '.join(used)}."))
    if notes:
        blocks.append(Bullets(notes))
    return blocks


def _state(r: RunRecord) -> str:
    if r.finished:
        return "finished"
    if r.error:
        first = r.error.splitlines()[1] if len(r.error.splitlines()) > 1 else r.error
        return f"failed: {first[:120]}"
    rows = r.rows
    at = int(rows[-1]["global_step"]) if rows else 0
    return f"unfinished ({at:,} of {r.budget:,} steps)"


def runs_section(runs: list[RunRecord], sweep: dict | None, problems: list[str]) -> list:
    rows = []
    for r in runs:
        res = r.result
        host = ""
        if r.sweep and r.sweep.get("attempts"):
            host = r.sweep["attempts"][-1].get("host") or ""
        rows.append([r.name, r.setting, r.env_id, str(r.seed), _state(r), number(r.final()),
                     number(r.evaluation()),
                     f"{res.global_step:,}" if res else "",
                     f"{res.wall_time:,.0f}" if res else "",
                     f"{res.sps:,.0f}" if res else "", host])
    blocks = [Heading(2, "Runs"),
              Table(["run", "setting", "env", "seed", "state", "final", "eval", "steps",
                     "train s", "steps/s", "host"], rows, right=(3, 5, 6, 7, 8, 9))]
    if sweep:
        lost = [(n, rec) for n, rec in sweep["runs"].items() if rec.get("status") == "failed"
                and n not in {r.name for r in runs}]
        if lost:
            blocks.append(Para("Runs of the sweep that failed before their run directory "
                               "existed:"))
            blocks.append(Bullets([f"`{n}`: {(rec.get('error') or '').splitlines()[0]}"
                                   for n, rec in lost]))
        pending = [n for n, rec in sweep["runs"].items()
                   if rec.get("status") in ("pending", "running", "interrupted")
                   and n not in {r.name for r in runs}]
        if pending:
            blocks.append(Para(f"{len(pending)} run(s) of the sweep have not started."))
    if problems:
        blocks.append(Para("Left out (unreadable):"))
        blocks.append(Bullets(problems))
    return blocks


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def code_versions(runs: list[RunRecord]) -> list:
    """Which code trained the runs (the last code recorded in each run.json): one bullet per
    distinct source hash, and a warning when there is more than one."""
    groups: dict[str, list[str]] = {}
    for r in runs:
        groups.setdefault(provenance_short(last_code(r.marker)), []).append(r.name)
    lines = [f"{code}: {len(names)} run(s)" + (f" ({', '.join(names[:6])}"
                                                + (", ..." if len(names) > 6 else "") + ")"
                                                if len(groups) > 1 else "")
             for code, names in sorted(groups.items(), key=lambda kv: -len(kv[1]))]
    blocks = [Heading(3, "Code of the runs")]
    if len(groups) > 1:
        blocks.append(Para(f"**The runs were trained by {len(groups)} different versions of "
                           f"the code** (mcpo.provenance: a hash of the package's source); "
                           f"compare them knowing that."))
    return blocks + [Bullets(lines)]


def provenance(runs: list[RunRecord], sweep: dict | None, argv: list[str]) -> list:
    blocks = [Heading(2, "Provenance")]
    if sweep:
        inv = []
        for i in sweep["invocations"]:
            c = i.get("counts", {})
            inv.append(f"{i.get('started')}: `{' '.join(i.get('command') or [])}` "
                       f"({i.get('source')}, scale {i.get('scale')}, {i.get('backend')} "
                       f"backend, {i.get('workers')} workers, host {i.get('host')}, mcpo "
                       f"{i.get('mcpo_version')}; {i.get('machine')}); "
                       + (f"{c.get('done', 0)} done, {c.get('skipped', 0)} skipped, "
                          f"{c.get('failed', 0)} failed, {i.get('steps', 0):,} env steps in "
                          f"{i.get('wall_time', 0):,.0f} s" if "ended" in i else
                          "did not finish (interrupted or still running)"))
        blocks += [Heading(3, "Sweep invocations"), Bullets(inv)]
    vers = []
    for p in PACKAGES:
        try:
            vers.append(f"{p} {version(p)}")
        except PackageNotFoundError:
            pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    blocks += [Heading(3, "This report"), Bullets([
        f"made {_dt.datetime.now().astimezone().isoformat(timespec='seconds')} by "
        f"`{' '.join(argv)}`",
        f"code: {provenance_short(code_identity())}",
        f"packages: {', '.join(vers)}; Python {platform.python_version()}",
        f"machine: {platform.node()}, {_cpu()}, {len(os.sched_getaffinity(0))} usable cores, "
        f"{platform.platform()}" + (f", load average {load[0]:.2f}" if load else "")])]
    blocks += code_versions(runs)
    cmds = []
    for r in runs:
        c = r.marker.get("command")
        if c:
            cmds.append(" ".join(map(str, c)))
    if cmds:
        total = sum(r.result.wall_time for r in runs if r.result)
        blocks += [Heading(3, f"The command of each run ({len(cmds)}; training time "
                              f"{total:,.0f} s in total, per run in the Runs table)"),
                   Code("\n".join(cmds))]
    return blocks


# ----------------------------------------------------------------------------------------------
def build_report(root: Path | str, out: Path | str | None = None, *,
                 reference: str | None = None, window: int = 5, reps: int = 10_000,
                 title: str | None = None, argv: list[str] | None = None) -> dict[str, Path]:
    """Write report.md, report.html and figures/ for the runs under `root` (into `out`,
    default `root`). Returns the paths written."""
    root = Path(root)
    runs, sweep, problems = load_runs(root)
    if not runs:
        raise ConfigError(f"No run directories under {root} (a run directory holds run.json; "
                          f"give a sweep's --out or a folder of runs).")
    if window < 1 or reps < 100:
        raise ConfigError(f"--window must be >= 1 and --reps >= 100; got {window}, {reps}.")
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    finished = [r for r in runs if r.finished]
    name = title or (sweep.get("name") if sweep else None) or root.resolve().name
    blocks: list = [Heading(1, f"Report: {name}")]
    if sweep and sweep.get("description"):
        blocks.append(Para(sweep["description"]))
    envs = sorted({r.env_id for r in runs})
    blocks.append(Para(f"{len(runs)} runs ({len(finished)} finished) of "
                       f"{len({r.setting for r in runs})} settings on {len(envs)} env(s): "
                       f"{', '.join(envs)}. Directory: `{root.resolve()}`."))
    if finished:
        blocks += main_tables(finished)
        blocks += robust_tables(finished, reference, reps)
        blocks += paper_tables(finished)
        blocks += figure_blocks(finished, out / FIG_DIR, FIG_DIR, window)
    else:
        blocks.append(Para("No run has finished yet: tables and figures need finished runs "
                           "(result.json)."))
    blocks += runs_section(runs, sweep, problems)
    blocks += provenance(runs, sweep, argv or sys.argv)
    md, html_path = out / "report.md", out / "report.html"
    md.write_text(to_markdown(blocks))
    html_path.write_text(to_html(blocks, out, f"mcpo report: {name}"))
    paths = {"markdown": md, "html": html_path}
    for b in blocks:
        if isinstance(b, Image):
            paths[b.path] = out / b.path
    return paths
