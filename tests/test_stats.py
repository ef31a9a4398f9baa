"""mcpo.stats against hand-computed values."""

import math

import numpy as np
import pytest

from mcpo import stats


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
