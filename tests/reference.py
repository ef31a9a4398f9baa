"""Reference pieces shared by the algorithm tests: NumPy closed forms (written independently of
mcpo.distributions) and a batch whose sampling policy differs clearly from the current one."""

import jax
import jax.numpy as jnp
import numpy as np

from mcpo.distributions import Categorical, DiagGaussian
from mcpo.networks import MLPActorCritic
from mcpo.rollout import Batch


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_categorical_kl(p_logits, q_logits):
    lp, lq = np_log_softmax(p_logits), np_log_softmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(-1)


def np_gaussian_kl(p, q, d):
    mp, sp, mq, sq = p[:, :d], np.exp(p[:, d:]), q[:, :d], np.exp(q[:, d:])
    return (np.log(sq / sp) + (sp ** 2 + (mp - mq) ** 2) / (2 * sq ** 2) - 0.5).sum(-1)


def np_log_prob(dist, params, actions):
    if isinstance(dist, Categorical):
        return np.take_along_axis(np_log_softmax(params), actions[:, None], -1)[:, 0]
    d = dist.act_dim
    mean, log_std = params[:, :d], params[:, d:]
    z = (actions - mean) / np.exp(log_std)
    return (-0.5 * z ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


def two_policies_and_batch(dist, n=16, seed=0):
    """A current policy clearly different from the sampling policy, and a batch from the
    latter (so that KL[new||old] and KL[old||new] differ)."""
    policy = MLPActorCritic(obs_dim=3, dist=dist, hidden_sizes=(8,))
    k_old, k_new, k_obs, k_act, k_adv = jax.random.split(jax.random.PRNGKey(seed), 5)
    old, new = policy.init(k_old), policy.init(k_new)
    new["actor"]["mlp"][-1]["w"] = new["actor"]["mlp"][-1]["w"] * 150.0  # sharpen pi_theta
    if isinstance(dist, DiagGaussian):
        new["actor"]["log_std"] = jnp.full((dist.act_dim,), 0.8)
    obs = jax.random.normal(k_obs, (n, 3))
    d_old = policy.dist_params(old["actor"], obs)
    actions = dist.sample(k_act, d_old)
    adv = jax.random.normal(k_adv, (n,))
    batch = Batch(obs=obs, actions=actions, logp=dist.log_prob(d_old, actions), dist=d_old,
                  values=jnp.zeros(n), advantages=adv, returns=adv)
    return policy, new, batch
