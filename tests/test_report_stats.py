"""mcpo.report.stats against hand-computed values, known distributions and rliable 1.2.0."""

import math

import numpy as np
import pytest

from mcpo.report import stats


def test_mean_std_uses_the_sample_std_and_ignores_nan():
    m, s = stats.mean_std([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert m == 2.5
    assert s == pytest.approx(math.sqrt(((1.5 ** 2) * 2 + (0.5 ** 2) * 2) / 3))
    assert stats.mean_std([7.0]) == (7.0, 0.0)
    assert all(math.isnan(v) for v in stats.mean_std([]))


def test_iqm_drops_a_quarter_from_each_end():
    assert stats.iqm([100.0, 1.0, 2.0, 3.0, -50.0]) == 2.0          # n=5: drop 1 each end
    assert stats.iqm([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) == 4.5  # n=8: drop 2 each end
    assert stats.iqm([3.0, 1.0, 2.0]) == 2.0                        # n=3: nothing dropped


def test_cohens_d_with_pooled_sample_std():
    a, b = [1.0, 2.0, 3.0], [3.0, 4.0, 5.0, 6.0]
    pooled = math.sqrt((2 * 1.0 + 3 * np.var(b, ddof=1)) / 5)
    assert stats.cohens_d(a, b) == pytest.approx((2.0 - 4.5) / pooled)
    assert stats.cohens_d(b, a) == pytest.approx(-stats.cohens_d(a, b))
    assert stats.cohens_d([1.0, 1.0], [1.0, 1.0]) == 0.0
    assert stats.cohens_d([2.0, 2.0], [1.0, 1.0]) == math.inf


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    x = [-150.0, -140.0, -135.0, -160.0, -128.0]
    lo, hi = stats.bootstrap_ci(x)
    assert lo < np.mean(x) < hi
    assert min(x) <= lo and hi <= max(x)
    assert (lo, hi) == stats.bootstrap_ci(x)
    assert stats.bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0)
    lo_m, hi_m = stats.bootstrap_ci(x, np.median)
    assert min(x) <= lo_m <= hi_m <= max(x)


def test_rank_marks_bold_best_and_good_within_half_a_std():
    groups = {"a": [-130.0, -135.0, -140.0], "b": [-132.0, -137.0, -142.0],
              "c": [-500.0, -600.0, -700.0], "d": []}
    marks = stats.rank_marks(groups)
    assert marks == {"a": "best", "b": "good", "c": "", "d": ""}
    assert stats.rank_marks(groups, higher_is_better=False)["c"] == "best"


def test_moving_average_is_the_trailing_mean_of_the_valid_part():
    np.testing.assert_allclose(stats.moving_average([1.0, 2.0, 3.0, 6.0], 2), [1.5, 2.5, 4.5])
    np.testing.assert_allclose(stats.moving_average([1.0, 2.0, 3.0, 6.0], 4), [3.0])
    np.testing.assert_array_equal(stats.moving_average([1.0, 2.0], 3), [1.0, 2.0])  # too short
    np.testing.assert_array_equal(stats.moving_average([4.0, 5.0], 1), [4.0, 5.0])


def test_aggregate_iqm_pools_the_runs_of_all_tasks():
    # 2 tasks x 4 runs pooled: 8 values, drop 2 from each end
    assert stats.aggregate_iqm([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, -100.0]]) == 3.5
    assert stats.aggregate_iqm([[], [2.0]]) == 2.0
    assert math.isnan(stats.aggregate_iqm([[], []]))


def test_probability_of_improvement_counts_ties_as_half_and_averages_tasks():
    # task 1: of the 9 pairs, x > y in 6 (3 with x=3, 2 with x=2, 1 with x=1)... by hand:
    x1, y1 = [1.0, 2.0, 3.0], [0.0, 1.0, 2.0]
    # pairs (x, y): x=1 beats 0, ties 1; x=2 beats 0, 1, ties 2; x=3 beats all three
    p1 = (1 + 0.5 + 2 + 0.5 + 3) / 9
    x2, y2 = [5.0, 5.0], [6.0, 7.0]  # never better
    assert stats.probability_of_improvement([x1], [y1]) == pytest.approx(p1)
    assert stats.probability_of_improvement([x1, x2], [y1, y2]) == pytest.approx(p1 / 2)
    assert stats.probability_of_improvement([[1.0]], [[1.0]]) == 0.5
    # a task without runs on one side is left out
    assert stats.probability_of_improvement([x1, []], [y1, y2]) == pytest.approx(p1)
    # P(X > Y) + P(Y > X) = 1 task by task
    assert (stats.probability_of_improvement([x1, x2], [y1, y2])
            + stats.probability_of_improvement([y1, y2], [x1, x2])) == pytest.approx(1.0)


def test_percentile_bootstrap_ci_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(123)
    mu, trials, covered = 3.0, 300, 0
    for t in range(trials):
        x = rng.normal(mu, 2.0, 30)
        lo, hi = stats.bootstrap_ci(x, resamples=2000, seed=t)
        covered += lo <= mu <= hi
    # the percentile interval is slightly narrow for n = 30: ~93-94% in expectation;
    # 300 trials give a binomial std of ~1.4 points
    assert 0.89 <= covered / trials <= 0.98, covered / trials


def test_stratified_bootstrap_keeps_tasks_and_brackets_the_pooled_iqm():
    tasks = [[1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 11.0, 12.0, 13.0, 14.0]]
    lo, hi = stats.stratified_bootstrap_ci(tasks, "iqm", reps=4000)
    assert lo < stats.aggregate_iqm(tasks) < hi
    # every resample keeps 5 runs of each task: the pooled mean can never leave [3, 12]
    lo_m, hi_m = stats.stratified_bootstrap_ci(tasks, "mean", reps=4000)
    assert 3.0 <= lo_m < 7.5 < hi_m <= 12.0
    assert stats.stratified_bootstrap_ci([[2.0, 2.0]], "mean") == (2.0, 2.0)


def test_bootstrap_mean_band_brackets_the_mean_curve():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, (6, 50)) + np.linspace(0, 10, 50)
    y[0, 40:] = np.nan  # a shorter run
    lo, hi = stats.bootstrap_mean_band(y, reps=500)
    m = np.nanmean(y, 0)
    assert lo.shape == hi.shape == (50,)
    assert np.all(lo <= m + 1e-12) and np.all(m <= hi + 1e-12) and np.all(hi > lo)


def _rliable():
    try:
        from rliable import library, metrics
    except Exception as e:  # not installed, or its arch/pandas do not import
        pytest.skip(f"rliable not importable here: {e}")
    return library, metrics


@pytest.mark.filterwarnings("ignore::FutureWarning")  # arch: random_state deprecation
def test_agreement_with_rliable_on_the_same_scores():
    library, metrics = _rliable()
    rng = np.random.default_rng(7)
    x = rng.normal(1.0, 1.0, (5, 3))   # runs x tasks, as rliable takes them
    y = rng.normal(0.5, 1.0, (5, 3))
    x[0, 0] = y[1, 0]                   # a tie
    ours_x, ours_y = [x[:, t] for t in range(3)], [y[:, t] for t in range(3)]
    assert stats.aggregate_iqm(ours_x) == pytest.approx(metrics.aggregate_iqm(x), abs=1e-12)
    assert stats.probability_of_improvement(ours_x, ours_y) == pytest.approx(
        metrics.probability_of_improvement(x, y), abs=1e-12)
    # rliable's bootstrap loops in Python (~1 ms per replicate), ours is vectorized: few
    # replicates there, many here; the percentile endpoints agree to Monte-Carlo error
    # (different random streams), checked to 10% of the interval's width
    rl_reps = 2000
    _, ci = library.get_interval_estimates(
        {"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=rl_reps,
        random_state=np.random.RandomState(0))
    rl_lo, rl_hi = np.ravel(ci["x"])
    lo, hi = stats.stratified_bootstrap_ci(ours_x, "iqm", reps=100_000)
    assert lo == pytest.approx(rl_lo, abs=0.1 * (rl_hi - rl_lo))
    assert hi == pytest.approx(rl_hi, abs=0.1 * (rl_hi - rl_lo))
    _, ci = library.get_interval_estimates(
        {"xy": (x, y)}, metrics.probability_of_improvement, reps=rl_reps,
        random_state=np.random.RandomState(0))
    rl_lo, rl_hi = np.ravel(ci["xy"])
    lo, hi = stats.probability_of_improvement_ci(ours_x, ours_y, reps=100_000)
    assert lo == pytest.approx(rl_lo, abs=0.1 * (rl_hi - rl_lo))
    assert hi == pytest.approx(rl_hi, abs=0.1 * (rl_hi - rl_lo))
