"""A2C: synchronous advantage actor-critic (Mnih et al. 2016, "Asynchronous Methods for Deep
Reinforcement Learning", the synchronous variant as in OpenAI Baselines; docs/design.md §5).

One gradient step per rollout batch on
    -E_t[log pi_theta(a_t|s_t) A_t] + c_v L_V - c_e H
(Mnih et al. 2016, Alg. S3: the policy-gradient term, the value regression term and the entropy
bonus), with the batch collected by the current policy, so every step is on-policy.

Choices, and why:
* Epochs and minibatches: A2C *is* one step per batch; a second step on the same batch without
  an importance ratio would be an off-policy gradient, i.e. a different (and unstable)
  algorithm. So these are A2C's defaults (`DEFAULTS`, with 8 envs x 32 steps), and `validate`
  refuses other values the user sets, rather than silently ignoring two flags. The batch size
  is set with --num-envs x --num-steps (A2C's usual 16 x 5; larger batches give smoother
  steps).
* Optimizer: Adam with global-norm clipping (the harness's `make_optimizer`, common
  --learning-rate / --adam-eps / --max-grad-norm / --anneal-lr), not the RMSProp of Mnih et
  al. 2016: every method in this harness is compared with the same optimizer, network and
  rollout, so that only the update rule differs (docs/design.md §5); RMSProp in the A3C paper served
  shared statistics across asynchronous workers, which a synchronous learner does not have.
  Adam's step is ~lr per parameter whatever the gradient scale, so A2C wants a larger lr than
  PPO's 3e-4 (e.g. 7e-4 to 1e-3, the A2C literature's range).
* Advantages are normalized over the batch when --norm-adv is on (the common flag).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax.numpy as jnp

from mcpo.algos.common import (AlgoSpec, init_train_state, make_minibatch_update, normalize,
                               value_loss)
from mcpo.types import ConfigError


def require_one_step_per_batch(cfg, algo: str, why: str) -> None:
    """ConfigError unless --update-epochs 1 --num-minibatches 1 (one step per rollout)."""
    if cfg.update_epochs != 1 or cfg.num_minibatches != 1:
        raise ConfigError(
            f"--algo {algo} takes one {why} step per rollout batch, so it needs "
            f"--update-epochs 1 --num-minibatches 1 (got --update-epochs {cfg.update_epochs} "
            f"--num-minibatches {cfg.num_minibatches}; these are its defaults when the flags are "
            f"not given). Set the batch size with --num-envs x --num-steps.")


@dataclass(frozen=True)
class A2CConfig:
    """A2C has no hyperparameter of its own: it uses the common --learning-rate, --vf-coef,
    --ent-coef, --max-grad-norm, --gae-lambda (1.0 gives A2C's n-step returns)."""

    def validate(self, cfg) -> None:
        require_one_step_per_batch(cfg, "a2c", "gradient")


def a2c_loss(params, algo_state, mb, *, policy, vf_coef, ent_coef, norm_adv):
    """-E[log pi(a|s) A] + c_v L_V - c_e H (Mnih et al. 2016, Alg. S3)."""
    dist, v = policy.dist_and_value(params, mb.obs)
    logp = policy.dist.log_prob(dist, mb.actions)
    adv = normalize(mb.advantages, norm_adv)
    pg_loss = -jnp.mean(logp * adv)
    v_loss = value_loss(policy, params, mb, v)
    entropy = jnp.mean(policy.dist.entropy(dist))
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy
    return loss, dict(policy_loss=pg_loss, value_loss=v_loss, entropy=entropy)


def init(cfg, policy, key):
    return init_train_state(cfg, policy, key)


def make_update(cfg, policy):
    loss = partial(a2c_loss, policy=policy, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                   norm_adv=cfg.norm_adv)
    return make_minibatch_update(cfg, policy, loss)


# One step per batch; several envs x short rollouts (Mnih et al. 2016: 16 workers x t_max 5;
# SB3's A2C: n_steps 5, lr 7e-4). 8 x 32 keeps the batch's gradient less noisy and the
# per-iteration host work (logging, checks) small next to the rollout; lr is SB3's.
DEFAULTS = dict(update_epochs=1, num_minibatches=1, num_envs=8, num_steps=32,
                learning_rate=7e-4)

SPEC = AlgoSpec("a2c", A2CConfig, init, make_update,
                "A2C: one policy-gradient step per rollout (Adam)", defaults=DEFAULTS)
