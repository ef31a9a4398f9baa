"""Trust Region-Guided PPO (Wang et al., "Trust Region-Guided Proximal Policy Optimization",
NeurIPS 2019; docs/design.md §5).

PPO's constant clip range [1-eps, 1+eps] is replaced by a per-(s, a) range derived from the
trust region KL[pi_old(.|s) || pi(.|s)] <= delta:

    l^delta_{s,a} = min_pi pi(a|s)/pi_old(a|s),  u^delta_{s,a} = max_pi pi(a|s)/pi_old(a|s)
                    subject to KL[pi_old(.|s) || pi(.|s)] <= delta,

and, as in the TRGPPO paper, the range is never narrower than PPO's:
l = min(l^delta, 1 - eps), u = max(u^delta, 1 + eps). The loss is PPO's with these bounds:
-E[min(tau A, clip(tau, l, u) A)].

How the bounds are computed (both depend only on pi_old and a, so once per update, on the
whole batch, by bisection with a fixed iteration count inside the jitted update):

* Categorical, p = pi_old(a|s): the extreme pi puts ratio r on a and rescales the other
  actions by (1 - r p)/(1 - p) (the authors' reduction), so r solves
  -p log r - (1 - p) log((1 - r p)/(1 - p)) = delta, with r in (0, 1) and in (1, 1/p).
* Diagonal Gaussian, z = (a - mu_old)/sigma_old per dimension: the KKT conditions of the
  problem over diagonal Gaussians give a one-parameter family (standardized coordinates)
  mu_i = t z_i, sigma_i^2 = (1 - t)(1 + t z_i^2); t in (0, 1) gives the maximum ratio,
  t in (-1/max_i z_i^2, 0) the minimum, and t solves sum_i KL_i(t) = delta. For one action
  dimension this is the authors' 1-D problem; for several we solve it exactly over diagonal
  Gaussians, the policy class (the authors' code instead rotates z onto the diagonal and splits
  delta evenly over dimensions) -- our reading.

The constraint is KL[pi_old || pi] (the paper's D_KL(pi_old, pi), docs/design.md §5) for both
action types; the authors' code uses that direction for discrete actions but KL[pi || pi_old]
in its Gaussian solver. delta's default 0.03 is the authors' continuous-control example value
(their README's TRGPPO-delta command); their Atari example uses 0.001. Their default MuJoCo
command derives delta from eps instead (their "TRPPO-epsilon"); --clip-coef keeps the eps floor.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from mcpo.algos.common import (AlgoSpec, init_train_state, make_minibatch_update, normalize,
                               policy_value_terms, ratio_diagnostics, value_loss)
from mcpo.types import param
from mcpo.distributions import Categorical
from mcpo.rollout import Batch

BISECTION_STEPS = 60
P_MIN = 1e-6  # pi_old(a|s) is kept in [P_MIN, 1 - P_MIN] so both brackets stay finite

# The batch the minibatch loop sees: the rollout plus each sample's clip bounds.
BoundedBatch = namedtuple("BoundedBatch", Batch._fields + ("clip_lower", "clip_upper"))


@dataclass(frozen=True)
class TRGPPOConfig:
    # delta <= 1 keeps every bound's bisection bracket resolvable in float32 (for delta ~ 7
    # the widest Gaussian lower bound needs t within float32 rounding of its end point).
    trgppo_delta: float = param(0.03, "Trust-region radius delta: per-(s,a) clip bounds are "
                                "the extreme ratios under KL[pi_old || pi] <= delta.",
                                low=0.0, low_open=True, high=1.0)
    clip_coef: float = param(0.2, "PPO's eps: the TRGPPO range is never narrower than "
                             "[1-eps, 1+eps].", low=0.0, high=1.0, high_open=True)


def bisect(f, lo, hi, steps: int = BISECTION_STEPS):
    """Root of an increasing f on [lo, hi] (elementwise), by `steps` bisection steps."""
    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = f(mid) > 0.0
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, steps, body, (lo, hi))
    return 0.5 * (lo + hi)


# Categorical ----------------------------------------------------------------------------------
def categorical_kl_at_ratio(r, p):
    """KL[pi_old || pi] of the extreme pi with ratio r on an action of old probability p:
    -p log r - (1 - p) log((1 - r p)/(1 - p))   (TRGPPO, discrete case)."""
    return -p * jnp.log(r) - (1.0 - p) * jnp.log1p(p * (1.0 - r) / (1.0 - p))


def categorical_ratio_bounds(p, delta):
    """(l^delta, u^delta) for actions of old probability p."""
    p = jnp.clip(p, P_MIN, 1.0 - P_MIN)
    kl = lambda r: categorical_kl_at_ratio(r, p) - delta  # noqa: E731
    one = jnp.ones_like(p)
    lower = bisect(lambda r: -kl(r), jnp.zeros_like(p), one)  # KL decreases on (0, 1)
    upper = bisect(kl, one, 1.0 / p)                          # KL increases on (1, 1/p)
    return lower, upper


# Diagonal Gaussian ----------------------------------------------------------------------------
def gaussian_family(t, z):
    """The KKT family in standardized coordinates: per dimension (KL_i, log ratio_i) of
    N(t z_i, (1-t)(1+t z_i^2)) against N(0, 1) at the point z_i; t has a leading batch shape."""
    t = t[..., None]
    var = (1.0 - t) * (1.0 + t * z * z)
    kl = 0.5 * jnp.log(var) + (1.0 + t * t * z * z) / (2.0 * var) - 0.5
    log_ratio = -0.5 * jnp.log(var) - jnp.square(z - t * z) / (2.0 * var) + 0.5 * z * z
    return kl, log_ratio


def gaussian_ratio_bounds(z, delta):
    """(l^delta, u^delta) for standardized actions z = (a - mu_old)/sigma_old, shape (..., d)."""
    kl_sum = lambda t: jnp.sum(gaussian_family(t, z)[0], axis=-1) - delta  # noqa: E731
    batch = z.shape[:-1]
    # Upper bound: t in [0, 1), KL increasing in t.
    t_up = bisect(kl_sum, jnp.zeros(batch), jnp.ones(batch))
    # Lower bound: t = -u / (m + 1 - u) maps u in [0, 1) onto (-1/m, 0], m = max_i z_i^2
    # (t -> -inf when z = 0); KL increases in u.
    m = jnp.max(z * z, axis=-1)
    to_t = lambda u: -u / (m + 1.0 - u)  # noqa: E731
    u_lo = bisect(lambda u: kl_sum(to_t(u)), jnp.zeros(batch), jnp.ones(batch))
    log_upper = jnp.sum(gaussian_family(t_up, z)[1], axis=-1)
    log_lower = jnp.sum(gaussian_family(to_t(u_lo), z)[1], axis=-1)
    return jnp.exp(log_lower), jnp.exp(log_upper)


def clip_bounds(dist, old_dist_params, actions, logp_old, delta, eps):
    """TRGPPO's per-sample clip range: l = min(l^delta, 1-eps), u = max(u^delta, 1+eps)."""
    if isinstance(dist, Categorical):
        lower, upper = categorical_ratio_bounds(jnp.exp(logp_old), delta)
    else:
        mean, log_std = dist.split(old_dist_params)
        lower, upper = gaussian_ratio_bounds((actions - mean) * jnp.exp(-log_std), delta)
    return jnp.minimum(lower, 1.0 - eps), jnp.maximum(upper, 1.0 + eps)


def trgppo_loss(params, algo_state, mb, *, policy, vf_coef, ent_coef, norm_adv):
    """-E[min(tau A, clip(tau, l_{s,a}, u_{s,a}) A)] + c_v L_V - c_e H  (TRGPPO objective)."""
    pt, v = policy_value_terms(policy, params, mb)
    adv = normalize(mb.advantages, norm_adv)
    surrogate = jnp.minimum(pt.ratio * adv,
                            jnp.clip(pt.ratio, mb.clip_lower, mb.clip_upper) * adv)
    pg_loss = -jnp.mean(surrogate)
    v_loss = value_loss(policy, params, mb, v)
    entropy = jnp.mean(policy.dist.entropy(pt.dist))
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy
    clipped = jnp.where(adv >= 0, pt.ratio > mb.clip_upper, pt.ratio < mb.clip_lower)
    return loss, dict(policy_loss=pg_loss, value_loss=v_loss, entropy=entropy,
                      approx_kl=ratio_diagnostics(pt)["approx_kl"],
                      clipfrac=jnp.mean(clipped.astype(jnp.float32)))


def init(cfg, policy, key):
    return init_train_state(cfg, policy, key)


def make_update(cfg, policy):
    tc: TRGPPOConfig = cfg.algo_config
    loss = partial(trgppo_loss, policy=policy, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                   norm_adv=cfg.norm_adv)
    inner = make_minibatch_update(cfg, policy, loss)

    def update(state, batch: Batch):
        lower, upper = clip_bounds(policy.dist, batch.dist, batch.actions, batch.logp,
                                   tc.trgppo_delta, tc.clip_coef)
        state, stats = inner(state, BoundedBatch(*batch, lower, upper))
        stats.update(clip_lower_mean=jnp.mean(lower), clip_upper_mean=jnp.mean(upper),
                     clip_lower_min=jnp.min(lower), clip_upper_max=jnp.max(upper))
        return state, stats

    return update


SPEC = AlgoSpec("trgppo", TRGPPOConfig, init, make_update,
                "Trust Region-Guided PPO (per-(s,a) clip range from a KL trust region)")
