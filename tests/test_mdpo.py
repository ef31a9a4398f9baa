"""MDPO (Tomar et al., on-policy; docs/design.md §5): the KL direction KL[pi_theta || pi_old], the
annealed coefficient beta0 / t_k (learning: tests/test_learning.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reference import (np_categorical_kl, np_gaussian_kl, np_log_prob,
                       two_policies_and_batch)
from mcpo.algos import mdpo
from mcpo.config import TrainConfig
from mcpo.distributions import Categorical, DiagGaussian


@pytest.mark.parametrize("dist", [Categorical(3), DiagGaussian(2)], ids=["discrete", "box"])
def test_loss_uses_kl_of_the_new_policy_against_the_old(dist):
    policy, params, mb = two_policies_and_batch(dist)
    coef = 3.0
    loss, info = mdpo.mdpo_loss(params, {"kl_coef": jnp.float32(coef)}, mb, policy=policy,
                                vf_coef=0.0, ent_coef=0.0, norm_adv=False)
    # by hand, in numpy
    d_new = np.asarray(policy.dist_params(params["actor"], mb.obs), np.float64)
    d_old = np.asarray(mb.dist, np.float64)
    actions, adv = np.asarray(mb.actions), np.asarray(mb.advantages, np.float64)
    kl = (np_categorical_kl if isinstance(dist, Categorical)
          else lambda p, q: np_gaussian_kl(p, q, dist.act_dim))
    ratio = np.exp(np_log_prob(dist, d_new, actions) - np_log_prob(dist, d_old, actions))
    kl_new_old, kl_old_new = kl(d_new, d_old).mean(), kl(d_old, d_new).mean()
    expected = -(np.mean(ratio * adv) - coef * kl_new_old)
    wrong_direction = -(np.mean(ratio * adv) - coef * kl_old_new)
    assert abs(expected - wrong_direction) > 0.05  # the batch tells the directions apart
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
    np.testing.assert_allclose(float(info["kl_new_old"]), kl_new_old, rtol=1e-4)


def test_coefficient_is_beta0_over_t_k_annealed_linearly():
    K, beta0 = 100, 2.0
    coef = lambda k: float(mdpo.kl_coefficient(k, K, beta0))  # noqa: E731
    assert coef(0) == pytest.approx(beta0)               # t_0 = 1
    assert coef(50) == pytest.approx(beta0 / 0.5)        # t = 1/2 halfway
    assert coef(99) == pytest.approx(beta0 * K)          # last iteration: t = 1/K
    assert coef(130) == pytest.approx(beta0 * K)         # floored: never divides by zero
    assert float(mdpo.step_size(25, K)) == pytest.approx(0.75)


def test_update_reads_the_iteration_from_the_optimizer_step_count():
    cfg = TrainConfig(algo="mdpo", env_id="CartPole-v1", num_envs=1, num_steps=16,
                      total_timesteps=160, update_epochs=2, num_minibatches=2,
                      algo_config=mdpo.MDPOConfig(mdpo_beta0=2.0))
    assert cfg.num_iterations == 10
    policy, _, batch = two_policies_and_batch(Categorical(3))
    state = mdpo.init(cfg, policy, jax.random.PRNGKey(0))
    update = jax.jit(mdpo.make_update(cfg, policy))
    state, stats = update(state, batch)
    assert float(stats["kl_coef"]) == pytest.approx(2.0) and float(stats["t_k"]) == 1.0
    _, stats = update(state, batch)                       # second iteration: t = 0.9
    assert float(stats["kl_coef"]) == pytest.approx(2.0 / 0.9, rel=1e-6)
    _, stats = update(state._replace(n_updates=jnp.int32(5 * 4)), batch)  # 5 iterations done
    assert float(stats["kl_coef"]) == pytest.approx(4.0)
    _, stats = update(state._replace(n_updates=jnp.int32(9 * 4)), batch)  # the last one
    assert float(stats["kl_coef"]) == pytest.approx(20.0, rel=1e-5)
