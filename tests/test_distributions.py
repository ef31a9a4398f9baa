"""Closed-form log-prob, entropy and KL against direct and Monte-Carlo computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcpo.distributions import Categorical, DiagGaussian

N_MC = 400_000


def gauss_params(mean, log_std):
    return jnp.concatenate([jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32)])


def test_gaussian_log_prob_matches_density_formula():
    d = DiagGaussian(2)
    mean, log_std = np.array([0.3, -1.0]), np.array([-0.5, 0.2])
    a = np.array([1.1, -0.4])
    std = np.exp(log_std)
    expected = np.sum(-0.5 * ((a - mean) / std) ** 2 - np.log(std * math.sqrt(2 * math.pi)))
    assert float(d.log_prob(gauss_params(mean, log_std), jnp.asarray(a))) == pytest.approx(
        expected, rel=1e-5)


def test_categorical_log_prob_and_entropy_by_hand():
    d = Categorical(3)
    logits = jnp.array([0.5, -1.0, 2.0])
    p = np.exp(np.array(logits)) / np.exp(np.array(logits)).sum()
    assert float(d.log_prob(logits, jnp.array(2))) == pytest.approx(math.log(p[2]), rel=1e-5)
    assert float(d.entropy(logits)) == pytest.approx(-(p * np.log(p)).sum(), rel=1e-5)


def test_gaussian_kl_and_entropy_match_monte_carlo():
    d = DiagGaussian(3)
    p = gauss_params([0.2, -0.5, 1.0], [-0.3, 0.1, 0.4])
    q = gauss_params([0.0, 0.3, 0.7], [0.2, -0.2, 0.5])
    x = d.sample(jax.random.PRNGKey(0), jnp.broadcast_to(p, (N_MC, 6)))
    lp, lq = d.log_prob(p, x), d.log_prob(q, x)
    mc_kl = float(jnp.mean(lp - lq))
    se = float(jnp.std(lp - lq)) / math.sqrt(N_MC)
    assert float(d.kl(p, q)) == pytest.approx(mc_kl, abs=4 * se + 1e-4)
    assert float(d.entropy(p)) == pytest.approx(float(-jnp.mean(lp)), abs=0.01)
    # KL is not symmetric: the reverse direction is a different number
    assert abs(float(d.kl(p, q)) - float(d.kl(q, p))) > 0.01
    assert float(d.kl(p, p)) == pytest.approx(0.0, abs=1e-6)


def test_categorical_kl_and_entropy_match_monte_carlo():
    d = Categorical(4)
    p = jnp.array([1.0, 0.2, -0.5, 0.3])
    q = jnp.array([-0.2, 0.8, 0.1, 0.0])
    x = d.sample(jax.random.PRNGKey(1), jnp.broadcast_to(p, (N_MC, 4)))
    lp, lq = d.log_prob(p, x), d.log_prob(q, x)
    se = float(jnp.std(lp - lq)) / math.sqrt(N_MC)
    assert float(d.kl(p, q)) == pytest.approx(float(jnp.mean(lp - lq)), abs=4 * se + 1e-4)
    assert float(d.entropy(p)) == pytest.approx(float(-jnp.mean(lp)), abs=0.01)


def test_batched_shapes():
    d = DiagGaussian(2)
    p = jnp.zeros((5, 7, 4))
    a = jnp.zeros((5, 7, 2))
    assert d.log_prob(p, a).shape == (5, 7)
    assert d.kl(p, p).shape == (5, 7)
    assert d.entropy(p).shape == (5, 7)


def test_sampling_draws_what_jax_random_draws_so_precomputed_noise_changes_no_run():
    """A rollout draws every step's random bits before its scan and maps them to actions in
    the step (mcpo.jaxenv.loop); the actions, and so every run recorded before that change,
    stay the same only if that map is exactly JAX's own sampler: jax.random.normal for the
    Gaussian, jax.random.categorical's Gumbel-max for the categorical."""
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    g = DiagGaussian(2)
    p = jax.random.normal(jax.random.PRNGKey(4), (64, 5, 4))
    mean, log_std = g.split(p)
    by_jax = jax.vmap(lambda k, m, s: m + jnp.exp(s) * jax.random.normal(k, m.shape))(
        keys, mean, log_std)
    bits = jax.vmap(lambda k: g.bits(k, (5,)))(keys)
    assert jnp.array_equal(jax.vmap(g.sample)(keys, p), by_jax)
    assert jnp.array_equal(g.sample_from_bits(p, bits), by_jax)
    c = Categorical(7)
    logits = 3.0 * jax.random.normal(jax.random.PRNGKey(5), (64, 5, 7))
    by_jax = jax.vmap(lambda k, lg: jax.random.categorical(k, lg, axis=-1))(keys, logits)
    bits = jax.vmap(lambda k: c.bits(k, (5,)))(keys)
    assert jnp.array_equal(jax.vmap(c.sample)(keys, logits), by_jax)
    assert jnp.array_equal(c.sample_from_bits(logits, bits), by_jax)
    assert len(np.unique(np.asarray(by_jax))) == 7  # the draws reach every action
