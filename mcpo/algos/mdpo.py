"""On-policy Mirror Descent Policy Optimization (Tomar et al., "Mirror Descent Policy
Optimization", ICLR 2022; docs/design.md §5).

At iteration k MDPO approximately solves, by the K epochs x minibatches of SGD steps,

    max_theta  E_t[tau_t(theta) A_t] - (1/t_k) E_t[KL[pi_theta(.|s_t) || pi_old(.|s_t)]]

Note the KL direction: the *new* policy is the first argument (the mirror-descent Bregman term
B(pi, pi_k) of the negative-entropy map), the reverse of KL-Fixed/PPO's KL[pi_old || pi_theta].

Our reading where the sources leave a choice (the MCPO paper's appendix is not available):

* beta0 (the MCPO paper's Table 1 "MDPO (beta0 = 2)") multiplies the MD step-size term:
  the KL coefficient is beta0 / t_k, so it starts at beta0 and grows as t_k shrinks.
* t_k is annealed linearly from 1 toward 0 over training, per iteration (one mirror-descent
  step per rollout): t_k = 1 - k/K with k = 0, ..., K-1 the iteration index and K =
  cfg.num_iterations (the authors' on-policy code uses the same linear schedule). Division by
  zero cannot happen: the last iteration has t_{K-1} = 1/K, and t_k is floored at 1/K in case a
  resumed run is extended past its original K. So the coefficient goes beta0 -> beta0 * K.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax.numpy as jnp

from mcpo.algos.common import (AlgoSpec, init_train_state, make_minibatch_update, normalize,
                               policy_value_terms, ratio_diagnostics, value_loss)
from mcpo.types import param


@dataclass(frozen=True)
class MDPOConfig:
    mdpo_beta0: float = param(2.0, "MDPO KL scale beta0: the KL[pi_theta || pi_old] "
                              "coefficient is beta0 / t_k, t_k = 1 - k/K annealed linearly "
                              "over the K iterations (MCPO paper Table 1 uses 2).",
                              low=0.0, low_open=True, high=1e6)


def step_size(k, num_iterations: int):
    """MDPO's t_k = 1 - k/K, floored at 1/K so that 1/t_k stays finite (module docstring)."""
    K = max(1, num_iterations)
    return jnp.maximum(1.0 - jnp.asarray(k, jnp.float32) / K, 1.0 / K)


def kl_coefficient(k, num_iterations: int, beta0: float):
    """beta0 / t_k: the KL coefficient at iteration k (0-based)."""
    return beta0 / step_size(k, num_iterations)


def mdpo_loss(params, algo_state, mb, *, policy, vf_coef, ent_coef, norm_adv):
    """-(E[tau A] - (beta0/t_k) E[KL[pi_theta || pi_old]]) + c_v L_V - c_e H  (Tomar et al.,
    on-policy MDPO objective)."""
    pt, v = policy_value_terms(policy, params, mb)
    adv = normalize(mb.advantages, norm_adv)
    # KL[pi_theta || pi_old]: the current policy is the first argument (reversed direction).
    kl = jnp.mean(policy.dist.kl(pt.dist, mb.dist))
    pg_loss = -(jnp.mean(pt.ratio * adv) - algo_state["kl_coef"] * kl)
    v_loss = value_loss(policy, params, mb, v)
    entropy = jnp.mean(policy.dist.entropy(pt.dist))
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy
    return loss, dict(policy_loss=pg_loss, value_loss=v_loss, entropy=entropy, kl_new_old=kl,
                      **ratio_diagnostics(pt))


def init(cfg, policy, key):
    coef = jnp.asarray(cfg.algo_config.mdpo_beta0, jnp.float32)  # t_0 = 1
    return init_train_state(cfg, policy, key, lambda params: {"kl_coef": coef})


def make_update(cfg, policy):
    beta0, K = cfg.algo_config.mdpo_beta0, cfg.num_iterations
    steps_per_iteration = cfg.update_epochs * cfg.num_minibatches
    loss = partial(mdpo_loss, policy=policy, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                   norm_adv=cfg.norm_adv)
    inner = make_minibatch_update(cfg, policy, loss)

    def update(state, batch):
        k = state.n_updates // steps_per_iteration  # iterations done so far
        coef = kl_coefficient(k, K, beta0)
        state, stats = inner(state._replace(algo={"kl_coef": coef}), batch)
        stats.update(kl_coef=coef, t_k=step_size(k, K))
        return state, stats

    return update


SPEC = AlgoSpec("mdpo", MDPOConfig, init, make_update,
                "Mirror Descent Policy Optimization (on-policy, reverse KL annealed)")
