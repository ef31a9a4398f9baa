"""The report layer: which runs a report is made of and what "final performance" is
(`runs`), statistics (`stats`), the paper's numbers as data (`paper`), figures, and the
report itself as Markdown and self-contained HTML (`build`, `document`). It reads run and
sweep directories only; it sits above the trainer and the experiment layer, below the CLI."""

from mcpo.report.build import build_report
from mcpo.report.runs import FINAL_DOC, RunRecord, load_runs

__all__ = ["FINAL_DOC", "RunRecord", "build_report", "load_runs"]
