"""Statistics for comparing methods over a few seeds (docs/design.md §6: the paper's mean ± std,
bold best, "good" = Cohen's d below 0.5 against the best; and beyond it, the interquartile
mean, stratified-bootstrap confidence intervals and the probability of improvement of Agarwal
et al. 2021, "Deep RL at the Edge of the Statistical Precipice" — the definitions of their
library rliable 1.2.0, against which tests/test_report_stats.py checks these).

Per-method functions take plain sequences of per-run numbers (one per seed) and ignore NaNs.
Across tasks (environments), scores are a list with one sequence of runs per task; the tasks
may hold different numbers of runs."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray([v for v in values if v is not None], np.float64)
    return x[~np.isnan(x)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single run, NaN for none)."""
    x = _clean(values)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean as in Agarwal et al. 2021 (rliable uses scipy's trim_mean(x, 0.25)):
    sort, drop floor(n/4) runs from each end, average the rest."""
    x = np.sort(_clean(values))
    if x.size == 0:
        return math.nan
    cut = int(0.25 * x.size)
    return float(x[cut:x.size - cut].mean())


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """IQM of each row of a 2-D array (the same trimming as `iqm`)."""
    x = np.sort(x, axis=-1)
    cut = int(0.25 * x.shape[-1])
    return x[..., cut:x.shape[-1] - cut].mean(-1)


_ROW_STATISTICS = {"mean": lambda x: x.mean(-1), "median": lambda x: np.median(x, -1),
                   "iqm": _iqm_rows}


def _row_statistic(statistic):
    """A statistic as a function of the rows of a 2-D array (one row per bootstrap sample)."""
    if isinstance(statistic, str):
        return _ROW_STATISTICS[statistic]
    if statistic is np.mean:
        return _ROW_STATISTICS["mean"]
    if statistic is np.median:
        return _ROW_STATISTICS["median"]
    return lambda x: np.apply_along_axis(statistic, -1, x)


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1.0 - confidence) / 2
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


def _resample(tasks: list[np.ndarray], reps: int, rng) -> list[np.ndarray]:
    """Stratified bootstrap: within each task its runs are resampled with replacement, tasks
    are kept (rliable's StratifiedBootstrap with task_bootstrap=False). One (reps, n_task)
    array per task."""
    return [x[rng.integers(0, x.size, (reps, x.size))] for x in tasks]


def _tasks(scores: Sequence[Sequence[float]]) -> list[np.ndarray]:
    tasks = [_clean(t) for t in scores]
    return [t for t in tasks if t.size]


def aggregate_iqm(scores: Sequence[Sequence[float]]) -> float:
    """Interquartile mean of all runs of all tasks pooled (rliable's aggregate_iqm: scipy's
    trim_mean(scores, 0.25, axis=None)). Scores of different tasks must be on one scale
    (normalized) for this to mean anything."""
    tasks = _tasks(scores)
    return iqm(np.concatenate(tasks)) if tasks else math.nan


def stratified_bootstrap_ci(scores: Sequence[Sequence[float]], statistic="iqm", *,
                            confidence: float = 0.95, reps: int = 10_000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile confidence interval of `statistic` of the pooled runs ("iqm", "mean",
    "median", np.mean, np.median or any function of a 1-D array), the runs resampled within
    each task (Agarwal et al. 2021, §4; rliable.library.get_interval_estimates with its
    default 'percentile' method)."""
    tasks = _tasks(scores)
    if not tasks:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    pooled = np.concatenate(_resample(tasks, reps, rng), axis=1)
    return _percentile_interval(_row_statistic(statistic)(pooled), confidence)


def bootstrap_ci(values: Sequence[float], statistic=np.mean, *, confidence: float = 0.95,
                 resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` over the runs of one method on
    one task (runs resampled with replacement). With 5 runs it is wide and a little too
    narrow in truth: report it as what it is, a statement about these seeds."""
    return stratified_bootstrap_ci([values], statistic, confidence=confidence, reps=resamples,
                                   seed=seed)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + 0.5 P(X = Y) over all pairs (the Mann-Whitney U statistic / (m n)); x and
    y are (..., m) and (..., n): the last axes are the runs."""
    gt = (x[..., :, None] > y[..., None, :]).mean((-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean((-2, -1))
    return gt + 0.5 * eq


def probability_of_improvement(x: Sequence[Sequence[float]],
                               y: Sequence[Sequence[float]]) -> float:
    """Average over tasks of P(X > Y) + 0.5 P(X = Y), X a run of method x and Y a run of
    method y on the same task (Agarwal et al. 2021, §4.3; rliable's
    probability_of_improvement). `x` and `y` hold one sequence of runs per task, the same
    tasks in the same order; tasks where either has no runs are left out."""
    pairs = [(a, b) for a, b in zip(map(_clean, x), map(_clean, y)) if a.size and b.size]
    if not pairs:
        return math.nan
    return float(np.mean([_improvement(a, b) for a, b in pairs]))


def probability_of_improvement_ci(x: Sequence[Sequence[float]], y: Sequence[Sequence[float]],
                                  *, confidence: float = 0.95, reps: int = 10_000,
                                  seed: int = 0) -> tuple[float, float]:
    """Percentile CI of `probability_of_improvement`: the runs of x and of y resampled
    independently within each task (rliable's StratifiedIndependentBootstrap)."""
    pairs = [(a, b) for a, b in zip(map(_clean, x), map(_clean, y)) if a.size and b.size]
    if not pairs:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    per_task = []
    for a, b in pairs:
        xa, yb = _resample([a, b], reps, rng)
        per_task.append(_improvement(xa, yb))
    return _percentile_interval(np.mean(per_task, axis=0), confidence)


def bootstrap_mean_band(y: np.ndarray, *, confidence: float = 0.95, reps: int = 2_000,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile-bootstrap CI of the mean over runs of curves y (runs x points),
    runs resampled with replacement (for learning-curve bands). NaN points (a run that does
    not reach that far) are left out of each point's mean."""
    y = np.asarray(y, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.shape[0], (reps, y.shape[0]))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points stay NaN
        means = np.nanmean(y[idx], axis=1)
        a = (1.0 - confidence) / 2
        lo, hi = np.nanquantile(means, [a, 1.0 - a], axis=0)
    return lo, hi


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d = (mean a - mean b) / pooled sample std. 0 when both are constant and equal,
    +-inf when constant and different, NaN with fewer than 2 runs in total."""
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0 or x.size + y.size < 3:
        return math.nan
    diff = x.mean() - y.mean()
    pooled = ((x.size - 1) * (x.var(ddof=1) if x.size > 1 else 0.0)
              + (y.size - 1) * (y.var(ddof=1) if y.size > 1 else 0.0)) / (x.size + y.size - 2)
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return float(diff / math.sqrt(pooled))


def rank_marks(groups: dict[str, Sequence[float]], *, higher_is_better: bool = True,
               good_d: float = 0.5) -> dict[str, str]:
    """The paper's table marks: "best" for the best mean, "good" for a method whose |Cohen's d|
    against the best is below `good_d`, "" otherwise (and for methods without runs)."""
    means = {k: mean_std(v)[0] for k, v in groups.items()}
    valid = {k: m for k, m in means.items() if not math.isnan(m)}
    if not valid:
        return {k: "" for k in groups}
    best = (max if higher_is_better else min)(valid, key=valid.get)
    marks = {}
    for k in groups:
        if k == best:
            marks[k] = "best"
        elif k in valid and abs(cohens_d(groups[k], groups[best])) < good_d:
            marks[k] = "good"
        else:
            marks[k] = ""
    return marks


def moving_average(y, window: int) -> np.ndarray:
    """Trailing mean over `window` points ("valid" part only, so len(y) - window + 1 points);
    `y` unchanged when window <= 1 or it is shorter than the window. For learning curves."""
    y = np.asarray(y, np.float64)
    if window <= 1 or len(y) < window:
        return y
    return np.convolve(y, np.ones(window) / window, mode="valid")
