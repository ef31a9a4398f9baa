"""V-MPO, on-policy (Song et al., "V-MPO: On-Policy Maximum a Posteriori Policy Optimization
for Discrete and Continuous Control", ICLR 2020; docs/design.md §5).

Per minibatch (advantages A normalized per minibatch by the harness, `--norm-adv`):

* E-step: keep the top half of A (D~). Weights psi = exp(A/eta) / sum_{D~} exp(A/eta) with eta
  held fixed; temperature (dual) loss  L_eta = eta eps_eta + eta log(mean_{D~} exp(A/eta)).
* M-step: policy loss  L_pi = -sum_{D~} psi log pi_theta(a|s), plus a KL trust region on all
  states of the minibatch with Lagrange multiplier alpha:
  L_alpha = alpha (eps_alpha - sg[KL]) + sg[alpha] KL,  KL = E_s KL[pi_old || pi_theta].
  Diagonal Gaussians use V-MPO's decoupled constraints: KL_mu with the new mean and the old
  std, KL_sigma with the old mean and the new std, each with its own alpha and eps.
* eta and the alphas are positive by a log parameterization (value = exp(raw)); after each
  step raw is projected to >= log(1e-8) (V-MPO's eta_min = alpha_min = 1e-8). They have their
  own Adam (--vmpo-dual-lr); the paper trains them with the network's optimizer for far more
  steps than our CI budgets take, so a separate, larger step size is our choice.

Defaults: eta0 = 1 (V-MPO's initial eta); alpha0 = 1 (the MCPO paper's Table 1 "VMPO (alpha0 =
1)", also V-MPO's initial alpha_mu, alpha_sigma for continuous control); eps_eta = 0.01,
eps_alpha_mu = 0.0075 and eps_alpha_sigma = 1e-5 follow V-MPO's continuous-control settings
(eps_eta 0.01; eps_alpha_mu and eps_alpha_sigma drawn log-uniformly from [0.005, 0.01] and
[5e-6, 5e-5] -- we take fixed values inside those ranges). V-MPO's hyperparameter tables could
not be consulted here; these values are as public re-implementations reproduce them.
eps_alpha = 0.01 for categorical policies is our choice (V-MPO tunes it per domain).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from mcpo.algos.common import (AlgoSpec, TrainState, batch_diagnostics, init_train_state,
                               make_optimizer, mean_over_steps, minibatch_epochs, normalize,
                               policy_value_terms, ratio_diagnostics, value_loss)
from mcpo.types import ConfigError, param
from mcpo.distributions import DiagGaussian

DUAL_MIN = 1e-8  # eta_min = alpha_min (V-MPO)
DUAL_MAX = 1e6   # initial eta / alpha beyond this make exp(A / eta) flat or the KL term all


@dataclass(frozen=True)
class VMPOConfig:
    vmpo_alpha0: float = param(1.0, "Initial KL multiplier alpha (each of alpha_mu, "
                               "alpha_sigma for Gaussians); MCPO paper Table 1 uses 1.",
                               low=DUAL_MIN, high=DUAL_MAX)
    vmpo_eta0: float = param(1.0, "Initial temperature eta.", low=DUAL_MIN, high=DUAL_MAX)
    vmpo_eps_eta: float = param(0.01, "Temperature constraint eps_eta.", low=0.0,
                                low_open=True, high=10.0)
    vmpo_eps_alpha: float = param(0.01, "KL bound eps_alpha (categorical policies).",
                                  low=0.0, low_open=True, high=10.0)
    vmpo_eps_alpha_mu: float = param(0.0075, "Mean KL bound eps_alpha_mu (Gaussian policies).",
                                     low=0.0, low_open=True, high=10.0)
    vmpo_eps_alpha_sigma: float = param(1e-5, "Covariance KL bound eps_alpha_sigma (Gaussian "
                                        "policies).", low=0.0, low_open=True, high=10.0)
    vmpo_dual_lr: float = param(1e-2, "Adam learning rate of log eta and log alpha.",
                                low=0.0, low_open=True, high=1.0)

    def validate(self, cfg) -> None:
        if cfg.minibatch_size < 2:
            raise ConfigError(f"V-MPO keeps the top half of each minibatch, so minibatches "
                              f"need at least 2 samples; got {cfg.minibatch_size} (--num-envs "
                              f"x --num-steps / --num-minibatches).")


# E-step ---------------------------------------------------------------------------------------
def top_half(adv):
    """Indices of the top half of advantages (D~) and their values."""
    values, idx = jax.lax.top_k(adv, adv.shape[0] // 2)
    return idx, values


def top_half_weights(top_adv, eta):
    """psi = exp(A/eta) / sum_{D~} exp(A/eta) over the top half (V-MPO E-step)."""
    return jax.nn.softmax(top_adv / eta)


def temperature_loss(top_adv, eta, eps_eta):
    """L_eta = eta eps_eta + eta log(mean_{D~} exp(A/eta))  (V-MPO temperature loss)."""
    n = top_adv.shape[0]
    return eta * eps_eta + eta * (jax.nn.logsumexp(top_adv / eta) - jnp.log(n))


# M-step ---------------------------------------------------------------------------------------
def kl_terms(dist, old, new):
    """Mean KL[pi_old || pi_theta]: one term (categorical) or V-MPO's decoupled (KL_mu,
    KL_sigma) for diagonal Gaussians."""
    if isinstance(dist, DiagGaussian):
        mean_old, log_std_old = dist.split(old)
        mean_new, log_std_new = dist.split(new)
        kl_mu = dist.kl(old, jnp.concatenate([mean_new, log_std_old], axis=-1))
        kl_sigma = dist.kl(old, jnp.concatenate([mean_old, log_std_new], axis=-1))
        return jnp.stack([jnp.mean(kl_mu), jnp.mean(kl_sigma)])
    return jnp.mean(dist.kl(old, new))[None]


def lagrange_losses(alpha, kl, eps):
    """(L for alpha, L for theta): alpha (eps - sg[KL]) and sg[alpha] KL, summed over the
    constraints (V-MPO's alpha loss)."""
    sg = jax.lax.stop_gradient
    return jnp.sum(alpha * (eps - sg(kl))), jnp.sum(sg(alpha) * kl)


def dual_values(duals):
    return jnp.exp(duals["log_eta"]), jnp.exp(duals["log_alpha"])


def kl_epsilons(vc: VMPOConfig, dist):
    if isinstance(dist, DiagGaussian):
        return jnp.array([vc.vmpo_eps_alpha_mu, vc.vmpo_eps_alpha_sigma])
    return jnp.array([vc.vmpo_eps_alpha])


def vmpo_loss(params, duals, mb, *, policy, vc: VMPOConfig, vf_coef, ent_coef, norm_adv):
    """L_pi + L_eta + L_alpha + c_v L_V - c_e H (V-MPO total loss, value loss from the harness)."""
    sg = jax.lax.stop_gradient
    eta, alpha = dual_values(duals)
    pt, v = policy_value_terms(policy, params, mb)
    adv = normalize(mb.advantages, norm_adv)
    idx, top_adv = top_half(adv)
    weights = top_half_weights(top_adv, sg(eta))
    pi_loss = -jnp.sum(weights * pt.logp[idx])               # L_pi over D~
    eta_loss = temperature_loss(top_adv, eta, vc.vmpo_eps_eta)  # L_eta
    kl = kl_terms(policy.dist, mb.dist, pt.dist)
    alpha_loss, kl_loss = lagrange_losses(alpha, kl, kl_epsilons(vc, policy.dist))  # L_alpha
    v_loss = value_loss(policy, params, mb, v)
    entropy = jnp.mean(policy.dist.entropy(pt.dist))
    loss = pi_loss + eta_loss + alpha_loss + kl_loss + vf_coef * v_loss - ent_coef * entropy
    info = dict(policy_loss=pi_loss, temperature_loss=eta_loss, alpha_loss=alpha_loss,
                kl_loss=kl_loss, value_loss=v_loss, entropy=entropy, eta=eta,
                approx_kl=ratio_diagnostics(pt)["approx_kl"],
                weights_max=jnp.max(weights))
    if isinstance(policy.dist, DiagGaussian):
        info.update(alpha_mu=alpha[0], alpha_sigma=alpha[1], kl_mu=kl[0], kl_sigma=kl[1])
    else:
        info.update(alpha=alpha[0], kl=kl[0])
    return loss, info


def _dual_tx(cfg):
    return make_optimizer(cfg, learning_rate=cfg.algo_config.vmpo_dual_lr)


def init(cfg, policy, key) -> TrainState:
    vc: VMPOConfig = cfg.algo_config
    n_kl = 2 if isinstance(policy.dist, DiagGaussian) else 1
    duals = {"log_eta": jnp.log(jnp.asarray(vc.vmpo_eta0, jnp.float32)),
             "log_alpha": jnp.full((n_kl,), jnp.log(vc.vmpo_alpha0), jnp.float32)}
    return init_train_state(cfg, policy, key, lambda params: {
        "duals": duals, "dual_opt_state": _dual_tx(cfg).init(duals)})


def make_update(cfg, policy):
    vc: VMPOConfig = cfg.algo_config
    tx, tx_dual = make_optimizer(cfg), _dual_tx(cfg)
    grad_fn = jax.value_and_grad(
        lambda p, d, mb: vmpo_loss(p, d, mb, policy=policy, vc=vc, vf_coef=cfg.vf_coef,
                                   ent_coef=cfg.ent_coef, norm_adv=cfg.norm_adv),
        argnums=(0, 1), has_aux=True)
    floor = jnp.log(DUAL_MIN)

    def step(state: TrainState, mb):
        algo = state.algo
        (_, info), (g_params, g_duals) = grad_fn(state.params, algo["duals"], mb)
        upd, opt_state = tx.update(g_params, state.opt_state, state.params)
        params = optax.apply_updates(state.params, upd)
        upd_d, dual_opt_state = tx_dual.update(g_duals, algo["dual_opt_state"], algo["duals"])
        # projection onto eta, alpha >= 1e-8 (V-MPO)
        duals = jax.tree.map(lambda x: jnp.maximum(x, floor),
                             optax.apply_updates(algo["duals"], upd_d))
        info = dict(info, grad_norm=optax.global_norm(g_params))
        return state._replace(params=params, opt_state=opt_state,
                              algo={"duals": duals, "dual_opt_state": dual_opt_state},
                              n_updates=state.n_updates + 1), info

    def update(state: TrainState, batch):
        key, k_perm = jax.random.split(state.key)
        state, info = minibatch_epochs(state._replace(key=key), batch, k_perm,
                                       cfg.update_epochs, cfg.num_minibatches, step)
        stats = mean_over_steps(info)
        stats.update(batch_diagnostics(policy, state.params, batch))
        return state, stats

    return update


SPEC = AlgoSpec("vmpo", VMPOConfig, init, make_update,
                "V-MPO (on-policy MPO: top-half advantage weighting, KL multipliers)")
