"""TRGPPO (Wang et al. 2019; docs/design.md §5): the per-(s,a) clip bounds against numerical
solutions of the KL-constrained problem (discrete and Gaussian), the eps-widening, the loss,
CartPole learning (Pendulum: tests/test_learning.py)."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq, minimize

from conftest import CARTPOLE_QUICK, cartpole_solved, quick_train
from mcpo.algos import trgppo
from mcpo.distributions import Categorical, DiagGaussian
from reference import two_policies_and_batch


def extreme_ratio(objective, kl, x0s, delta, sign):
    """max (sign=+1) or min (sign=-1) of objective(x) s.t. kl(x) <= delta, by SLSQP from
    several starts; returns the best objective value."""
    best = None
    for x0 in x0s:
        with np.errstate(all="ignore"):  # SLSQP probes extreme sigmas on its way
            r = minimize(lambda x: -sign * objective(x), x0, method="SLSQP",
                         constraints=[{"type": "ineq", "fun": lambda x: delta - kl(x)}],
                         options={"ftol": 1e-13, "maxiter": 1000})
        if r.success and kl(r.x) <= delta + 1e-8:
            v = objective(r.x)
            best = v if best is None else (max(best, v) if sign > 0 else min(best, v))
    return best


@pytest.mark.parametrize("delta", [0.003, 0.03, 0.2])
def test_discrete_bounds_solve_the_kl_equation(delta):
    p = np.array([0.001, 0.02, 0.1, 0.3, 0.5, 0.8, 0.97])
    lower, upper = map(np.asarray, trgppo.categorical_ratio_bounds(jnp.asarray(p), delta))
    for pa, lo, up in zip(p, lower, upper):
        f = lambda r: -pa * np.log(r) - (1 - pa) * np.log((1 - r * pa) / (1 - pa)) - delta  # noqa
        with np.errstate(divide="ignore"):  # f = +inf at the bracket ends r = 0 and r = 1/p
            lo_ref = brentq(f, 1e-300, 1.0, xtol=1e-14)
            up_ref = brentq(f, 1.0, 1.0 / pa, xtol=1e-14)
        assert lo == pytest.approx(lo_ref, rel=2e-5)
        assert up == pytest.approx(up_ref, rel=2e-5)


def test_discrete_bounds_are_the_extreme_ratios_over_all_distributions():
    """No reduction assumed: optimize pi over the whole simplex (3 actions) under
    KL[pi_old || pi] <= delta."""
    delta, p_old = 0.05, np.array([0.15, 0.6, 0.25])
    lower, upper = map(np.asarray, trgppo.categorical_ratio_bounds(jnp.asarray(p_old), delta))
    rng = np.random.default_rng(0)
    for a in range(3):
        log_pi = lambda x: x - np.log(np.exp(x).sum())  # noqa: E731 - x are logits
        kl = lambda x: np.sum(p_old * (np.log(p_old) - log_pi(x)))  # noqa: E731
        obj = lambda x: np.exp(log_pi(x)[a]) / p_old[a]  # noqa: E731
        x0s = [np.log(p_old) + 0.05 * rng.standard_normal(3) for _ in range(5)]
        assert upper[a] == pytest.approx(extreme_ratio(obj, kl, x0s, delta, +1), rel=1e-4)
        assert lower[a] == pytest.approx(extreme_ratio(obj, kl, x0s, delta, -1), rel=1e-4)


@pytest.mark.parametrize("z", [[0.0], [0.5], [-1.3], [3.0], [0.3, -1.2], [2.0, 0.0, 1.0]])
@pytest.mark.parametrize("delta", [0.01, 0.1])
def test_gaussian_bounds_are_the_extreme_ratios_over_diagonal_gaussians(z, delta):
    """Optimize (mu, log sigma) of pi directly (standardized coordinates: pi_old = N(0, I),
    action z) under KL[pi_old || pi] <= delta."""
    z = np.asarray(z)
    d = z.size
    lower, upper = trgppo.gaussian_ratio_bounds(jnp.asarray(z[None], jnp.float32), delta)

    def kl(x):  # KL[N(0, I) || N(mu, diag sigma^2)]
        mu, ls = x[:d], x[d:]
        return np.sum(ls + (1 + mu ** 2) / (2 * np.exp(2 * ls)) - 0.5)

    def ratio(x):
        mu, ls = x[:d], x[d:]
        return np.exp(np.sum(-ls - (z - mu) ** 2 / (2 * np.exp(2 * ls)) + z ** 2 / 2))

    rng = np.random.default_rng(1)
    x0s = [0.1 * rng.standard_normal(2 * d) for _ in range(8)]
    assert float(upper[0]) == pytest.approx(extreme_ratio(ratio, kl, x0s, delta, +1), rel=2e-4)
    assert float(lower[0]) == pytest.approx(extreme_ratio(ratio, kl, x0s, delta, -1), rel=2e-4)


def test_gaussian_bounds_use_the_action_standardized_by_the_old_policy():
    dist, delta = DiagGaussian(2), 0.05
    old = jnp.array([[1.0, -2.0, np.log(0.5), np.log(3.0)]])
    a = jnp.array([[1.4, 1.0]])
    lo, up = trgppo.clip_bounds(dist, old, a, None, delta, eps=0.0)
    lo_z, up_z = trgppo.gaussian_ratio_bounds(jnp.array([[0.8, 1.0]]), delta)
    np.testing.assert_allclose([lo, up], [lo_z, up_z], rtol=1e-6)


def test_bounds_are_never_narrower_than_ppo_clip_range():
    eps = 0.2
    # tiny delta: the trust region is inside [1-eps, 1+eps], PPO's range is used
    p = jnp.array([0.5, 0.9])
    lo, up = trgppo.clip_bounds(Categorical(2), None, None, jnp.log(p), 1e-4, eps)
    np.testing.assert_allclose(lo, 0.8, rtol=1e-6)
    np.testing.assert_allclose(up, 1.2, rtol=1e-6)
    # large delta: the trust region's own bounds
    lo, up = trgppo.clip_bounds(Categorical(2), None, None, jnp.log(p), 0.3, eps)
    raw_lo, raw_up = trgppo.categorical_ratio_bounds(p, 0.3)
    assert np.all(np.asarray(lo) < 0.8) and float(up[0]) > 1.2
    np.testing.assert_allclose(lo, raw_lo, rtol=1e-6)
    np.testing.assert_allclose(up, np.maximum(np.asarray(raw_up), 1.2), rtol=1e-6)
    # rare actions get a much wider upper bound than likely ones (TRGPPO's exploration)
    _, up = trgppo.categorical_ratio_bounds(jnp.array([0.01, 0.5]), 0.03)
    assert float(up[0]) > 2.0 > 1.3 > float(up[1])


def test_loss_clips_each_ratio_to_its_own_bounds():
    policy, params, mb = two_policies_and_batch(Categorical(3), n=8)
    lower = jnp.linspace(0.5, 0.9, 8)
    upper = jnp.linspace(1.05, 1.6, 8)
    bmb = trgppo.BoundedBatch(*mb, lower, upper)
    loss, info = trgppo.trgppo_loss(params, (), bmb, policy=policy, vf_coef=0.0,
                                    ent_coef=0.0, norm_adv=False)
    d_new = policy.dist_params(params["actor"], mb.obs)
    ratio = np.exp(np.asarray(policy.dist.log_prob(d_new, mb.actions) - mb.logp))
    adv, lo, up = np.asarray(mb.advantages), np.asarray(lower), np.asarray(upper)
    expected = -np.mean(np.minimum(ratio * adv, np.clip(ratio, lo, up) * adv))
    assert not np.allclose(np.clip(ratio, lo, up), np.clip(ratio, 0.8, 1.2))  # bounds matter
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    clipped = np.where(adv >= 0, ratio > up, ratio < lo)
    assert float(info["clipfrac"]) == pytest.approx(clipped.mean())


@pytest.mark.slow
def test_learns_cartpole(run_dir):
    result, rows = quick_train(run_dir, "trgppo", CARTPOLE_QUICK)
    assert rows[0]["ep_return_mean"] < 60
    assert 0.0 < rows[0]["clip_lower_mean"] < 0.8 and rows[0]["clip_upper_mean"] > 1.2
    solved, why = cartpole_solved(result, rows)
    assert solved, why
