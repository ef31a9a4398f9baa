"""V-MPO (Song et al. 2019, on-policy; docs/design.md §5): top-half selection, normalized weights,
the temperature and alpha dual losses against hand computations, the decoupled Gaussian KL,
(learning: tests/test_learning.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcpo.algos import vmpo
from mcpo.config import ConfigError, TrainConfig
from mcpo.distributions import Categorical, DiagGaussian
from reference import np_log_prob, two_policies_and_batch

ADV = np.array([0.3, -1.0, 2.0, 0.5, -0.2, 1.1, -0.7, 0.9])


def test_top_half_keeps_the_largest_half_of_the_advantages():
    idx, top = vmpo.top_half(jnp.asarray(ADV))
    assert sorted(np.asarray(idx).tolist()) == [2, 3, 5, 7]
    np.testing.assert_allclose(np.sort(np.asarray(top)), [0.5, 0.9, 1.1, 2.0], rtol=1e-6)


def test_weights_are_exp_adv_over_eta_normalized_over_the_top_half():
    top, eta = np.array([2.0, 1.1, 0.9, 0.5]), 0.7
    w = np.asarray(vmpo.top_half_weights(jnp.asarray(top), eta))
    e = np.exp(top / eta)
    np.testing.assert_allclose(w, e / e.sum(), rtol=1e-5)
    assert w.sum() == pytest.approx(1.0, abs=1e-6)


def test_temperature_loss_and_its_gradient():
    top, eta, eps = np.array([2.0, 1.1, 0.9, 0.5]), 0.7, 0.01
    loss = float(vmpo.temperature_loss(jnp.asarray(top), eta, eps))
    assert loss == pytest.approx(eta * eps + eta * np.log(np.mean(np.exp(top / eta))), rel=1e-5)
    # dL/deta = eps - KL(psi || uniform over the top half): the dual is stationary exactly
    # when the weights are eps away from uniform.
    w = np.exp(top / eta) / np.exp(top / eta).sum()
    kl_uniform = np.sum(w * np.log(w * len(top)))
    grad = float(jax.grad(vmpo.temperature_loss, argnums=1)(jnp.asarray(top), eta, eps))
    assert grad == pytest.approx(eps - kl_uniform, rel=1e-4)


def test_alpha_dual_losses_and_their_gradients():
    alpha, kl, eps = jnp.array([0.5, 2.0]), jnp.array([0.02, 0.001]), jnp.array([0.01, 0.005])
    alpha_loss, kl_loss = vmpo.lagrange_losses(alpha, kl, eps)
    assert float(alpha_loss) == pytest.approx(0.5 * (0.01 - 0.02) + 2.0 * (0.005 - 0.001))
    assert float(kl_loss) == pytest.approx(0.5 * 0.02 + 2.0 * 0.001)
    # alpha sees only eps - sg[KL]; the policy (through KL) sees only sg[alpha] KL
    g_alpha = jax.grad(lambda a: sum(vmpo.lagrange_losses(a, kl, eps)))(alpha)
    g_kl = jax.grad(lambda k: sum(vmpo.lagrange_losses(alpha, k, eps)))(kl)
    np.testing.assert_allclose(g_alpha, [0.01 - 0.02, 0.005 - 0.001], rtol=1e-6)
    np.testing.assert_allclose(g_kl, [0.5, 2.0], rtol=1e-6)


def test_gaussian_kl_is_decoupled_into_mean_and_covariance_parts():
    dist = DiagGaussian(2)
    old = np.array([[0.1, -0.3, 0.0, -0.5], [1.0, 0.2, 0.3, 0.1]])
    new = np.array([[0.4, -0.1, 0.2, -0.9], [0.7, 0.0, -0.1, 0.4]])
    kl_mu, kl_sigma = np.asarray(vmpo.kl_terms(dist, jnp.asarray(old), jnp.asarray(new)))
    mo, so, mn, sn = old[:, :2], np.exp(old[:, 2:]), new[:, :2], np.exp(new[:, 2:])
    # KL[N(mu_old, S_old) || N(mu, S_old)] and KL[N(mu_old, S_old) || N(mu_old, S)]
    assert kl_mu == pytest.approx(np.mean(np.sum(0.5 * ((mn - mo) / so) ** 2, -1)), rel=1e-5)
    assert kl_sigma == pytest.approx(np.mean(np.sum(np.log(sn / so) + so ** 2 / (2 * sn ** 2)
                                                    - 0.5, -1)), rel=1e-5)


@pytest.mark.parametrize("dist", [Categorical(3), DiagGaussian(2)], ids=["discrete", "box"])
def test_total_loss_and_dual_gradients_on_a_tiny_batch(dist):
    policy, params, mb = two_policies_and_batch(dist, n=10)
    vc = vmpo.VMPOConfig(vmpo_eps_eta=0.05, vmpo_eps_alpha=0.02, vmpo_eps_alpha_mu=0.03,
                         vmpo_eps_alpha_sigma=0.004)
    n_kl = 2 if isinstance(dist, DiagGaussian) else 1
    duals = {"log_eta": jnp.log(0.8), "log_alpha": jnp.log(jnp.array([1.5, 0.3][:n_kl]))}
    loss_fn = lambda p, d: vmpo.vmpo_loss(p, d, mb, policy=policy, vc=vc, vf_coef=0.0,  # noqa
                                          ent_coef=0.0, norm_adv=True)
    (loss, info), (_, g_duals) = jax.value_and_grad(loss_fn, argnums=(0, 1),
                                                    has_aux=True)(params, duals)
    # by hand
    adv = np.asarray(mb.advantages, np.float64)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    top = np.argsort(adv)[-5:]
    eta, alpha = 0.8, np.array([1.5, 0.3][:n_kl])
    w = np.exp(adv[top] / eta) / np.exp(adv[top] / eta).sum()
    d_new = np.asarray(policy.dist_params(params["actor"], mb.obs), np.float64)
    logp = np_log_prob(dist, d_new, np.asarray(mb.actions))
    pi_loss = -np.sum(w * logp[top])
    eta_loss = eta * 0.05 + eta * np.log(np.mean(np.exp(adv[top] / eta)))
    kl = np.asarray(vmpo.kl_terms(dist, mb.dist, jnp.asarray(d_new, jnp.float32)), np.float64)
    eps = np.array([0.03, 0.004]) if n_kl == 2 else np.array([0.02])
    expected = pi_loss + eta_loss + np.sum(alpha * (eps - kl)) + np.sum(alpha * kl)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
    np.testing.assert_allclose(float(info["policy_loss"]), pi_loss, rtol=1e-4)
    np.testing.assert_allclose(float(info["temperature_loss"]), eta_loss, rtol=1e-4)
    # the duals' gradients (log parameterization): eta (eps_eta - KL(psi||U)), alpha (eps - KL);
    # the policy loss does not reach eta (psi uses sg[eta])
    kl_uniform = np.sum(w * np.log(w * len(top)))
    np.testing.assert_allclose(float(g_duals["log_eta"]), eta * (0.05 - kl_uniform), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(g_duals["log_alpha"]), alpha * (eps - kl), rtol=1e-3,
                               atol=1e-7)


def test_update_logs_the_multipliers_and_keeps_them_positive():
    cfg = TrainConfig(algo="vmpo", env_id="Pendulum-v1", num_envs=1, num_steps=16,
                      total_timesteps=160, update_epochs=2, num_minibatches=2,
                      algo_config=vmpo.VMPOConfig(vmpo_alpha0=1e-8, vmpo_dual_lr=1.0))
    policy, _, batch = two_policies_and_batch(DiagGaussian(2))
    state = vmpo.init(cfg, policy, jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.exp(state.algo["duals"]["log_alpha"]), [1e-8, 1e-8],
                               rtol=1e-5)
    state, stats = jax.jit(vmpo.make_update(cfg, policy))(state, batch)
    for k in ("eta", "alpha_mu", "alpha_sigma", "kl_mu", "kl_sigma", "temperature_loss"):
        assert np.isfinite(stats[k]), k
    # alpha starts at the floor and the huge dual step cannot push it below 1e-8
    assert np.all(np.exp(np.asarray(state.algo["duals"]["log_alpha"])) >= 1e-8 * (1 - 1e-5))


def test_minibatches_of_one_sample_are_refused():
    cfg = TrainConfig(algo="vmpo", env_id="Pendulum-v1", num_envs=1, num_steps=8,
                      total_timesteps=8, num_minibatches=8)
    with pytest.raises(ConfigError, match="top half"):
        cfg.validate()
