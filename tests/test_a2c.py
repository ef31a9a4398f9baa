"""A2C: the loss against hand-computed values, one Adam step per batch, config checks,
learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import (CARTPOLE_QUICK, cartpole_solved, PENDULUM_MIN_GAIN, PENDULUM_QUICK,
                      pendulum_gain, quick_train)

import mcpo
from mcpo.algos import a2c
from mcpo.algos.common import make_optimizer
from mcpo.config import ConfigError
from mcpo.distributions import Categorical
from mcpo.networks import MLPActorCritic
from mcpo.rollout import Batch

ONE_STEP = dict(update_epochs=1, num_minibatches=1)


def linear_softmax_batch():
    """Linear softmax actor and linear critic (no hidden layer), 4 states, 3 actions."""
    policy = MLPActorCritic(2, Categorical(3), hidden_sizes=())
    params = policy.init(jax.random.PRNGKey(0))
    params["actor"]["mlp"][0]["w"] = jnp.array([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]])
    params["actor"]["mlp"][0]["b"] = jnp.array([0.1, 0.0, -0.2])
    params["critic"]["mlp"][0]["w"] = jnp.array([[0.5], [-0.25]])
    params["critic"]["mlp"][0]["b"] = jnp.array([0.1])
    obs = jnp.array([[0.5, -1.0], [1.5, 0.2], [-0.7, 0.9], [0.0, 0.3]])
    actions = jnp.array([0, 2, 1, 1])
    adv = jnp.array([1.0, -2.0, 0.5, 3.0])
    returns = jnp.array([0.3, -1.0, 2.0, 0.0])
    d = policy.dist_params(params["actor"], obs)
    batch = Batch(obs=obs, actions=actions, logp=policy.dist.log_prob(d, actions), dist=d,
                  values=jnp.zeros(4), advantages=adv, returns=returns)
    return policy, params, batch


def test_loss_matches_a_hand_computation():
    policy, params, batch = linear_softmax_batch()
    W, b = np.asarray(params["actor"]["mlp"][0]["w"]), np.asarray(params["actor"]["mlp"][0]["b"])
    obs, act = np.asarray(batch.obs), np.asarray(batch.actions)
    logits = obs @ W + b
    logp_all = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    logp = logp_all[np.arange(4), act]
    adv = np.asarray(batch.advantages)
    v = obs @ np.asarray(params["critic"]["mlp"][0]["w"])[:, 0] + 0.1
    entropy = -(np.exp(logp_all) * logp_all).sum(1).mean()
    expected = (-(logp * adv).mean() + 0.5 * 0.5 * ((v - np.asarray(batch.returns)) ** 2).mean()
                - 0.01 * entropy)
    loss, info = a2c.a2c_loss(params, (), batch, policy=policy, vf_coef=0.5, ent_coef=0.01,
                              norm_adv=False)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(info["entropy"]), entropy, rtol=1e-5)
    # the policy gradient: d/dW of -E[log pi(a|s) A] = -E[A s (onehot(a) - pi(.|s))^T]
    grads = jax.grad(lambda p: a2c.a2c_loss(p, (), batch, policy=policy, vf_coef=0.0,
                                            ent_coef=0.0, norm_adv=False)[0])(params)
    probs = np.exp(logp_all)
    onehot = np.eye(3)[act]
    expected_gw = -np.mean([adv[i] * np.outer(obs[i], onehot[i] - probs[i]) for i in range(4)],
                           axis=0)
    np.testing.assert_allclose(np.asarray(grads["actor"]["mlp"][0]["w"]), expected_gw,
                               rtol=1e-5, atol=1e-7)


def test_advantages_are_normalized_over_the_batch_when_asked():
    policy, params, batch = linear_softmax_batch()
    adv = np.asarray(batch.advantages)
    normed = batch._replace(advantages=jnp.asarray((adv - adv.mean()) / (adv.std() + 1e-8)))
    kw = dict(policy=policy, vf_coef=0.5, ent_coef=0.0)
    np.testing.assert_allclose(float(a2c.a2c_loss(params, (), batch, norm_adv=True, **kw)[0]),
                               float(a2c.a2c_loss(params, (), normed, norm_adv=False, **kw)[0]),
                               rtol=1e-6)


def test_one_update_is_one_adam_step_on_the_whole_batch():
    policy, params, batch = linear_softmax_batch()
    cfg = mcpo.TrainConfig(algo="a2c", env_id="CartPole-v1", num_envs=1, num_steps=4,
                           total_timesteps=40, learning_rate=1e-2, **ONE_STEP)
    state = a2c.init(cfg, policy, jax.random.PRNGKey(0))._replace(params=params)
    state = state._replace(opt_state=make_optimizer(cfg).init(params))
    new, stats = jax.jit(a2c.make_update(cfg, policy))(state, batch)
    assert int(new.n_updates) == 1
    # the same step by hand: gradient of the loss on the whole batch, one optax update
    loss = lambda p: a2c.a2c_loss(p, (), batch, policy=policy, vf_coef=cfg.vf_coef,  # noqa
                                  ent_coef=cfg.ent_coef, norm_adv=cfg.norm_adv)[0]
    grads = jax.grad(loss)(params)
    tx = make_optimizer(cfg)
    upd, _ = tx.update(grads, tx.init(params), params)
    expected = optax.apply_updates(params, upd)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    for k in ("policy_loss", "value_loss", "entropy", "kl_old_new", "grad_norm"):
        assert k in stats


@pytest.mark.parametrize("flags", [dict(update_epochs=4, num_minibatches=1),
                                   dict(update_epochs=1, num_minibatches=4)])
def test_more_than_one_step_per_batch_is_refused(flags):
    cfg = mcpo.TrainConfig(algo="a2c", env_id="CartPole-v1", num_envs=4, num_steps=8, **flags)
    with pytest.raises(ConfigError, match="--update-epochs 1 --num-minibatches 1"):
        cfg.validate()
    mcpo.TrainConfig(algo="a2c", env_id="CartPole-v1", num_envs=4, num_steps=8,
                     **ONE_STEP).validate()


# ----------------------------------------------------------------------------------------------
# Learning
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a2c_learns_cartpole(run_dir):
    # One Adam step per 512-step batch (the preset's 4 x 128) is ~100 steps in 50k; A2C's usual
    # learning rate 7e-4 (Mnih et al. 2016; Baselines' A2C) instead of PPO's 3e-4.
    # Seeds 1-3 evaluate 452, 395, 482.
    result, rows = quick_train(run_dir, "a2c", CARTPOLE_QUICK, learning_rate=7e-4, **ONE_STEP)
    assert rows[0]["ep_return_mean"] < 60
    solved, why = cartpole_solved(result, rows)
    assert solved, why


@pytest.mark.slow
def test_a2c_improves_on_pendulum(tmp_path):
    # One step per batch learns Pendulum far slower than PPO's 10 x 16 steps per batch (with
    # the preset's 100k steps A2C's gain stayed <= 170 in every setting we tried). So: 300k in
    # 256-step batches (4 x 64, ~1170 steps), lr 3e-3 held constant (--no-anneal-lr: with
    # linear decay, the lr is small by the time the critic is good enough; gain 328 vs 1056).
    # A2C on Pendulum is fragile enough that one seed's gain depends on the CPU's float
    # rounding: seeds 1-3 gained 1056, 929, 616 on an AVX-512 EPYC and 219, 422, 603 on an
    # AVX2 one (2026-12-07). So the claim is the median of three seeds.
    gains = []
    for seed in (1, 2, 3):
        _, rows = quick_train(tmp_path / str(seed), "a2c", PENDULUM_QUICK, num_steps=64,
                              learning_rate=3e-3, total_timesteps=300_000, anneal_lr=False,
                              seed=seed, **ONE_STEP)
        first, last, gain = pendulum_gain(rows)
        assert first < -1000
        gains.append(gain)
    assert float(np.median(gains)) >= PENDULUM_MIN_GAIN, gains
