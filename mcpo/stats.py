"""Statistics for comparing methods over a few seeds (docs/design.md §6: the paper's mean ± std,
bold best, "good" = Cohen's d below 0.5 against the best; and beyond it, bootstrap confidence
intervals and the interquartile mean of Agarwal et al. 2021).

Everything takes plain sequences of per-run numbers (one per seed) and ignores NaNs."""

from __future__ import annotations

import math
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


def bootstrap_ci(values: Sequence[float], statistic=np.mean, *, confidence: float = 0.95,
                 resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` over runs (runs resampled with
    replacement). With 5 runs it is wide and a little too narrow in truth: report it as what it
    is, a statement about these seeds."""
    x = _clean(values)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, (resamples, x.size))]
    stats = np.apply_along_axis(statistic, 1, samples) if statistic is not np.mean \
        else samples.mean(1)
    a = (1.0 - confidence) / 2
    lo, hi = np.quantile(stats, [a, 1.0 - a])
    return float(lo), float(hi)


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
