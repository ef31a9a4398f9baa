"""`mcpo report DIR` and `mcpo plot RUN_DIR...`: the command line of the report layer."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from mcpo.report.build import build_report
from mcpo.report.figures import plot_runs
from mcpo.report.runs import RunRecord, find_run_dirs, load_runs
from mcpo.types import ConfigError


def add_parsers(sub, int_type) -> None:
    r = sub.add_parser(
        "report", help="tables and figures of a sweep (or of any folder of runs)",
        description="Write DIR/report.md and a self-contained DIR/report.html (figures in "
        "DIR/figures/): mean ± std tables with the paper's marks, IQM with bootstrap CIs, "
        "probability of improvement, the paper's own numbers beside ours, learning curves, "
        "MCPO's memory figures, and the provenance of every run. Final performance = the "
        "mean return of the last 100 training episodes; the deterministic evaluation is "
        "shown separately.")
    r.add_argument("dir", metavar="DIR", help="a sweep directory (mcpo sweep --out) or a "
                   "folder holding run directories")
    r.add_argument("--out", metavar="DIR", help="where to write the report (default: DIR)")
    r.add_argument("--reference", metavar="LABEL", help="the method whose probability of "
                   "improvement over the others is shown (default: the first MCPO method)")
    r.add_argument("--window", type=int_type, default=5, metavar="N",
                   help="moving average over N iterations in the figures (default: 5)")
    r.add_argument("--reps", type=int_type, default=10_000, metavar="N",
                   help="bootstrap resamples (default: 10000)")
    r.add_argument("--title", help="report title (default: the sweep's name)")

    p = sub.add_parser("plot", help="quick learning curves of individual runs",
                       description="Plot a logged metrics.csv column of one or more runs.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories (or folders holding them)")
    p.add_argument("--metric", default="ep_return_mean",
                   help="the metrics.csv column to plot (default: ep_return_mean)")
    p.add_argument("--x", default="global_step", choices=("global_step", "iteration",
                                                          "wall_time"),
                   help="x axis (default: global_step)")
    p.add_argument("--window", type=int_type, default=1, metavar="N",
                   help="moving average over N points (default: 1, none)")
    p.add_argument("--out", default="plot.png", metavar="FILE",
                   help="image to write (default: plot.png)")
    p.add_argument("--title", default=None)


def run_report(ns, argv: list[str]) -> int:
    paths = build_report(ns.dir, ns.out, reference=ns.reference, window=ns.window,
                         reps=ns.reps, title=ns.title, argv=["mcpo", *argv])
    figs = [k for k in paths if k not in ("markdown", "html")]
    print(f"report: {paths['markdown']} and {paths['html']} ({len(figs)} figures)")
    return 0


def run_plot(ns) -> int:
    if ns.window < 1:
        raise ConfigError(f"--window must be >= 1; got {ns.window}.")
    out = Path(ns.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the plot is a PNG; give a file name ending in .png.")
    runs: list[RunRecord] = []
    for d in ns.runs:
        if not find_run_dirs(Path(d)):
            raise ConfigError(f"{d} is not a run directory and holds none (a run directory "
                              f"holds run.json).")
        runs += load_runs(Path(d))[0]
    for r in runs:
        if not r.rows:
            raise ConfigError(f"{r.path} has no metrics yet (metrics.csv is empty or missing).")
        if not r.has_column(ns.metric):
            close = difflib.get_close_matches(ns.metric, list(r.rows[0]), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"{r.path}/metrics.csv has no column {ns.metric!r}.{hint} "
                              f"Its columns: {', '.join(list(r.rows[0])[:40])}"
                              + (", ..." if len(r.rows[0]) > 40 else "") + ".")
    title = ns.title or f"{ns.metric}: {len(runs)} run(s)"
    plot_runs(runs, ns.metric, ns.x, out, ns.window, title)
    print(f"plot: {out} ({len(runs)} run(s), {ns.metric} vs {ns.x})")
    return 0
