"""KL-regularized policy optimization: KL-Fixed and KL-Adaptive (PPO paper §4; docs/design.md §5).

Both maximize E[tau A] - beta E[KL[pi_old || pi_theta]] (paper §2, L_KL). KL-Fixed keeps beta;
KL-Adaptive halves or doubles it after each update from d = D(theta_old, theta) on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax.numpy as jnp

from mcpo.algos.common import (AlgoSpec, init_train_state, make_minibatch_update, normalize,
                               policy_value_terms, ratio_diagnostics, value_loss)
from mcpo.types import param

# beta is kept inside [BETA_MIN, BETA_MAX] so that long runs of halvings/doublings cannot
# underflow to 0 or overflow (the PPO paper does not bound it; docs/design.md is silent).
BETA_MIN, BETA_MAX = 1e-6, 1e6


@dataclass(frozen=True)
class KLFixedConfig:
    kl_beta: float = param(0.1, "KL penalty coefficient beta (the paper tunes 0.01, 0.1, 1).",
                           low=0.0, high=BETA_MAX)


@dataclass(frozen=True)
class KLAdaptiveConfig:
    kl_target: float = param(0.01, "Target KL d_targ (the paper tunes 0.003, 0.01, 0.03).",
                             low=0.0, low_open=True, high=10.0)
    kl_beta: float = param(1.0, "Initial KL penalty coefficient beta.", low=BETA_MIN,
                           high=BETA_MAX)


def kl_penalty_loss(params, algo_state, mb, *, policy, vf_coef, ent_coef, norm_adv):
    """L_KL (paper §2): -(E[tau A] - beta E[KL[pi_old || pi_theta]]) + c_v L_V - c_e H."""
    pt, v = policy_value_terms(policy, params, mb)
    adv = normalize(mb.advantages, norm_adv)
    kl = jnp.mean(policy.dist.kl(mb.dist, pt.dist))
    beta = algo_state["beta"]
    pg_loss = -(jnp.mean(pt.ratio * adv) - beta * kl)
    v_loss = value_loss(policy, params, mb, v)
    entropy = jnp.mean(policy.dist.entropy(pt.dist))
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy
    return loss, dict(policy_loss=pg_loss, value_loss=v_loss, entropy=entropy, kl=kl,
                      **ratio_diagnostics(pt))


def adapt_beta(beta, d, d_targ):
    """PPO paper §4: d < d_targ/1.5 -> beta/2; d > 1.5 d_targ -> 2 beta."""
    beta = jnp.where(d < d_targ / 1.5, beta / 2.0, jnp.where(d > d_targ * 1.5, beta * 2.0, beta))
    return jnp.clip(beta, BETA_MIN, BETA_MAX)


def _init(cfg, policy, key):
    beta = jnp.asarray(cfg.algo_config.kl_beta, jnp.float32)
    return init_train_state(cfg, policy, key, lambda params: {"beta": beta})


def _loss(cfg, policy):
    return partial(kl_penalty_loss, policy=policy, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                   norm_adv=cfg.norm_adv)


def make_update_fixed(cfg, policy):
    return make_minibatch_update(
        cfg, policy, _loss(cfg, policy),
        post_update=lambda state, batch, stats: (state, {"beta": state.algo["beta"]}))


def make_update_adaptive(cfg, policy):
    d_targ = cfg.algo_config.kl_target

    def post_update(state, batch, stats):
        beta_used = state.algo["beta"]
        new_beta = adapt_beta(beta_used, stats["kl_old_new"], d_targ)
        return state._replace(algo={"beta": new_beta}), {"beta": beta_used}

    return make_minibatch_update(cfg, policy, _loss(cfg, policy), post_update)


SPEC_FIXED = AlgoSpec("kl-fixed", KLFixedConfig, _init, make_update_fixed,
                      "KL penalty with fixed beta")
SPEC_ADAPTIVE = AlgoSpec("kl-adaptive", KLAdaptiveConfig, _init, make_update_adaptive,
                         "KL penalty with beta adapted to a target KL")
