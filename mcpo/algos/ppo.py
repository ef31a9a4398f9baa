"""PPO with the clipped surrogate (Schulman et al. 2017; docs/design.md §5)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax.numpy as jnp

from mcpo.algos.common import (AlgoSpec, init_train_state, make_minibatch_update, normalize,
                               policy_value_terms, ratio_diagnostics, value_loss)
from mcpo.types import param


@dataclass(frozen=True)
class PPOConfig:
    clip_coef: float = param(0.2, "PPO clip range epsilon (the paper tunes 0.1, 0.2, 0.3).",
                             low=0.0, low_open=True, high=1.0)


def ppo_loss(params, algo_state, mb, *, policy, clip_coef, vf_coef, ent_coef, norm_adv):
    """-E[min(tau A, clip(tau, 1-eps, 1+eps) A)] + c_v L_V - c_e H."""
    pt, v = policy_value_terms(policy, params, mb)
    adv = normalize(mb.advantages, norm_adv)
    surrogate = jnp.minimum(pt.ratio * adv,
                            jnp.clip(pt.ratio, 1.0 - clip_coef, 1.0 + clip_coef) * adv)
    pg_loss = -jnp.mean(surrogate)
    v_loss = value_loss(policy, params, mb, v)
    entropy = jnp.mean(policy.dist.entropy(pt.dist))
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy
    return loss, dict(policy_loss=pg_loss, value_loss=v_loss, entropy=entropy,
                      **ratio_diagnostics(pt, clip_coef))


def init(cfg, policy, key):
    return init_train_state(cfg, policy, key)


def make_update(cfg, policy):
    loss = partial(ppo_loss, policy=policy, clip_coef=cfg.algo_config.clip_coef,
                   vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef, norm_adv=cfg.norm_adv)
    return make_minibatch_update(cfg, policy, loss)


SPEC = AlgoSpec("ppo", PPOConfig, init, make_update, "PPO, clipped surrogate")
