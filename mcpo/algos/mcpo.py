"""Memory-Constrained Policy Optimization (Le et al., NeurIPS 2022), as docs/design.md §4 reads it.

Per minibatch, inside one jitted update (Algorithm 1, lines 5-9):

1. context v from theta, theta_old, psi_old (Eq. 1's input; constant, stop-gradient)
2. psi = sum_i f_phi(v)_i theta_i over the policy memory M            (Eq. 1)
3. alpha_t = sigmoid(tau_t(psi) A_t - A_t), beta switched on D's      (after Eq. 3, Eq. 4)
4. theta step on L1 (Eq. 3) and phi step on L2 (Eq. 5); since psi is held fixed in L1 and v is
   constant in L2, one gradient of L1 + L2 (Eq. 6) w.r.t. (theta, phi) gives exactly each
   step's own gradient; two Adam optimizers apply them.
5. diversity-promoting write of the new theta into M                  (Eq. 2); psi_old <- psi
After the K epochs theta_old <- theta, which the trainer does by sampling with the new theta.

"The policy" theta, the memory's entries theta_i and psi are `params["actor"]` pytrees. With
separate actor and critic MLPs that is the actor MLP (+ log-std). With Atari's Nature CNN,
whose trunk is shared by the policy and value heads, it is trunk + policy head: psi mixes the
trunk weights too (psi = sum_i w_i theta_i leaf by leaf, convolution kernels included), and
the value head reads theta's trunk. The paper does not say what its Atari memory holds; this
is our reading (docs/design.md §4): the trunk is part of what defines pi, so a stored policy
without its trunk would not be a policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mcpo.algos import memory as M
from mcpo.algos.common import (AlgoSpec, TrainState, batch_diagnostics, init_train_state,
                               make_optimizer, mean_over_steps, minibatch_epochs, normalize,
                               policy_terms, ratio_diagnostics, total_optimizer_steps,
                               value_loss)
from mcpo.algos.kl import adapt_beta
from mcpo.types import ConfigError, param

# Context features (Eq. 1's v; the paper's Table 4 is not available, docs/design.md §4 fixes these).
# D(a, b) = E_t KL[pi_a || pi_b]; R(x) = E_t[tau_t(x) A_t]; H(x) = E_t entropy of pi_x.
# Note R(theta_old) = E_t[A_t], which is 0 when advantages are normalized per minibatch.
CONTEXT_FULL = ("D_old_theta", "D_old_psiold", "D_psiold_theta",
                "R_theta", "R_old", "R_psiold",
                "H_theta", "H_old", "H_psiold", "value_loss")
# "Half features" ablation (paper §4.5 does not say which half; our choice): distances and the
# returns of theta and psi_old.
CONTEXT_HALF = ("D_old_theta", "D_old_psiold", "D_psiold_theta", "R_theta", "R_psiold")

ALPHA_RULES = ("learned", "fixed:0", "fixed:0.5", "fixed:1")
WRITE_RULES = ("diversity", "every", "interval:10", "interval:100")
BETA_RULES = ("switching", "annealed", "adaptive")


@dataclass(frozen=True)
class MCPOConfig:
    memory_size: int = param(10, "Policy memory capacity N (the paper tunes 5, 10, 40).",
                             low=1, high=1024)
    beta_max: float = param(10.0, "beta when D(theta_old, theta) > D(theta_old, psi) (Eq. 4).",
                            low=0.0, low_open=True, high=1e6)
    beta_min: float = param(0.01, "beta otherwise (Eq. 4); 0 < beta-min < beta-max.",
                            low=0.0, low_open=True, high=1e6)
    attn_hidden: int = param(64, "Hidden units of the attention network f_phi.", low=1,
                             high=65536)
    attn_learning_rate: float = param(3e-4, "Adam learning rate of the attention network.",
                                      low=0.0, low_open=True, high=1.0)
    alpha_rule: str = param("learned", "alpha_t: 'learned' (paper) or fixed:0|0.5|1 (ablation).",
                            choices=ALPHA_RULES)
    beta_rule: str = param("switching", "beta: 'switching' (Eq. 4); ablations: 'annealed' "
                           "(MDPO's 1/t_k, t_k = 1 - progress, capped at --beta-max) or "
                           "'adaptive' (PPO-KL's rule on D(theta_old, theta)).",
                           choices=BETA_RULES)
    kl_target: float = param(0.01, "Target KL d_targ for --beta-rule adaptive.", low=0.0,
                             low_open=True, high=10.0)
    kl_beta: float = param(1.0, "Initial beta for --beta-rule adaptive.", low=1e-6, high=1e6)
    write_rule: str = param("diversity", "Memory writing: 'diversity' (Eq. 2), 'every' "
                            "minibatch, or every 10/100 minibatches (ablation).",
                            choices=WRITE_RULES)
    context: str = param("full", "Context features for f_phi: 'full' or 'half' (ablation).",
                         choices=("full", "half"))
    psi_rule: str = param("attention", "psi from the attention network, or the 'mean' of M.",
                          choices=("attention", "mean"), cli=False)

    def validate(self, cfg) -> None:
        if not self.beta_min < self.beta_max:
            raise ConfigError(f"--beta-min ({self.beta_min}) must be smaller than --beta-max "
                              f"({self.beta_max}): Eq. 4 switches between 0 < beta_min < "
                              f"beta_max.")

    @property
    def context_names(self) -> tuple[str, ...]:
        return CONTEXT_FULL if self.context == "full" else CONTEXT_HALF


class MCPOState(NamedTuple):
    memory: M.Memory
    psi_old: object       # actor pytree
    attn: object          # phi
    attn_opt_state: object
    beta: jax.Array       # current beta of the 'adaptive' rule (unused by 'switching')


def _attn_tx(cfg):
    return make_optimizer(cfg, learning_rate=cfg.algo_config.attn_learning_rate)


def init(cfg, policy, key) -> TrainState:
    key, k_attn = jax.random.split(key)
    mc = cfg.algo_config

    def algo_state(params):
        theta_old = params["actor"]
        attn = M.attention_init(k_attn, len(mc.context_names), mc.memory_size, mc.attn_hidden)
        # Alg. 1 line 1: psi_old <- theta_old, theta <- theta_old; M = [theta_old].
        return MCPOState(memory=M.memory_init(theta_old, mc.memory_size), psi_old=theta_old,
                         attn=attn, attn_opt_state=_attn_tx(cfg).init(attn),
                         beta=jnp.asarray(annealed_beta(0.0, mc.beta_max)
                                          if mc.beta_rule == "annealed" else mc.kl_beta,
                                          jnp.float32))

    return init_train_state(cfg, policy, key, algo_state)


def context_features(policy, params, psi_old, mb, adv, names) -> jax.Array:
    """Eq. 1's context v for theta, theta_old and psi_old on the minibatch (stop-gradient)."""
    kl, ent = policy.dist.kl, policy.dist.entropy
    d_theta = policy.dist_params(params["actor"], mb.obs)
    d_old = mb.dist
    d_psiold = policy.dist_params(psi_old, mb.obs)
    tau = lambda d: jnp.exp(policy.dist.log_prob(d, mb.actions) - mb.logp)  # noqa: E731
    feats = {
        "D_old_theta": jnp.mean(kl(d_old, d_theta)),
        "D_old_psiold": jnp.mean(kl(d_old, d_psiold)),
        "D_psiold_theta": jnp.mean(kl(d_psiold, d_theta)),
        "R_theta": jnp.mean(tau(d_theta) * adv),
        "R_old": jnp.mean(adv),
        "R_psiold": jnp.mean(tau(d_psiold) * adv),
        "H_theta": jnp.mean(ent(d_theta)),
        "H_old": jnp.mean(ent(d_old)),
        "H_psiold": jnp.mean(ent(d_psiold)),
        "value_loss": value_loss(policy, params, mb),
    }
    return jax.lax.stop_gradient(jnp.stack([feats[n] for n in names]))


def virtual_policy_weights(mc: MCPOConfig, attn, memory, context):
    """Attention weights per physical slot: f_phi(v) masked to valid slots, or the mean."""
    if mc.psi_rule == "mean":
        return M.mean_weights(memory)
    return M.attention_weights(M.attention_logits(attn, context), memory)


def alpha_weights(mc: MCPOConfig, logp_psi, logp_old, adv):
    """alpha_t = exp(R_t(psi)) / (exp(R_t(psi)) + exp(R_t(theta_old))) with R_t(x) = tau_t(x)A_t
    and tau_t(theta_old) = 1, i.e. sigmoid(tau_t(psi) A_t - A_t); per sample, stop-gradient."""
    if mc.alpha_rule != "learned":
        return jnp.full_like(adv, float(mc.alpha_rule.split(":")[1]))
    # The log-ratio is clipped only to keep exp finite (|log tau| > 20 never occurs in practice).
    tau_psi = jnp.exp(jnp.clip(logp_psi - logp_old, -20.0, 20.0))
    return jax.lax.stop_gradient(jax.nn.sigmoid(tau_psi * adv - adv))


def switching_beta(mc: MCPOConfig, d_old_theta, d_old_psi):
    """Eq. 4: beta_max if D(theta_old, theta) > D(theta_old, psi) else beta_min.
    Returns (beta, whether beta_max was chosen)."""
    use_max = d_old_theta > d_old_psi
    return jnp.where(use_max, mc.beta_max, mc.beta_min), use_max


def annealed_beta(progress, beta_max):
    """The 'annealed' ablation (paper §4.5, 'adopted from MDPO'): MDPO's KL coefficient 1/t_k
    with t_k = 1 - progress (Tomar et al., on-policy MDPO), capped at beta_max so it stays
    finite at the end of training. Our reading; the paper gives no formula."""
    return jnp.minimum(beta_max, 1.0 / jnp.maximum(1.0 - progress, 1e-8))


def select_beta(mc: MCPOConfig, algo: "MCPOState", d_old_theta, d_old_psi):
    """beta for this minibatch under the configured rule; (beta, switched-to-max flag).
    'annealed' and 'adaptive' use the beta kept in the state, set once per iteration."""
    beta, is_max = switching_beta(mc, d_old_theta, d_old_psi)
    if mc.beta_rule != "switching":
        return algo.beta, jnp.asarray(False)
    return beta, is_max


def mcpo_objective(params, attn, algo: MCPOState, mb, *, policy, mc: MCPOConfig, vf_coef,
                   ent_coef, norm_adv):
    """Eq. 6 as a loss: -(L1(theta) + L2(phi)) + c_v L_V - c_e H.

    psi is held fixed in L1 and the context v is constant in L2, so the gradient w.r.t. theta
    is L1's alone and the gradient w.r.t. phi is L2's alone (tests/test_mcpo.py checks both).
    """
    dist = policy.dist
    adv = normalize(mb.advantages, norm_adv)
    context = context_features(policy, params, algo.psi_old, mb, adv, mc.context_names)
    # Eq. 1: psi = sum_i f_phi(v)_i theta_i   (memory entries are constants)
    w = virtual_policy_weights(mc, attn, algo.memory, context)
    psi = M.mix(w, jax.lax.stop_gradient(algo.memory.params))
    d_psi = policy.dist_params(psi, mb.obs)
    logp_psi = dist.log_prob(d_psi, mb.actions)

    pt = policy_terms(policy, params["actor"], mb)
    d_psi_fixed = jax.lax.stop_gradient(d_psi)
    alpha = alpha_weights(mc, jax.lax.stop_gradient(logp_psi), mb.logp, adv)
    kl_old = dist.kl(mb.dist, pt.dist)       # KL[pi_theta_old || pi_theta]
    kl_psi = dist.kl(d_psi_fixed, pt.dist)   # KL[pi_psi || pi_theta]
    # Eq. 4 with the current theta (before its step) and psi.
    d_old_theta = jax.lax.stop_gradient(jnp.mean(kl_old))
    d_old_psi = jnp.mean(dist.kl(mb.dist, d_psi_fixed))
    beta, beta_is_max = select_beta(mc, algo, d_old_theta, d_old_psi)
    # Eq. 3: L1 = E[tau(theta) A] - beta E[(1 - alpha) KL[old||theta] + alpha KL[psi||theta]]
    l1 = jnp.mean(pt.ratio * adv) - beta * jnp.mean((1.0 - alpha) * kl_old + alpha * kl_psi)
    # Eq. 5: L2 = E[R_t(psi_phi)] = E[tau_t(psi_phi) A_t]
    l2 = jnp.mean(jnp.exp(logp_psi - mb.logp) * adv)
    v_loss = value_loss(policy, params, mb)
    entropy = jnp.mean(dist.entropy(pt.dist))
    theta_loss = -l1 + vf_coef * v_loss - ent_coef * entropy
    phi_loss = -l2
    aux = dict(theta_loss=theta_loss, phi_loss=phi_loss, psi=jax.lax.stop_gradient(psi),
               d_psi=d_psi_fixed, weights=jax.lax.stop_gradient(w), alpha=jnp.mean(alpha),
               beta=beta, beta_is_max=beta_is_max, d_old_theta=d_old_theta,
               d_old_psi=d_old_psi, policy_loss=-l1, value_loss=v_loss, entropy=entropy,
               attn_objective=l2, kl_psi_theta=jnp.mean(kl_psi), context=context, **ratio_diagnostics(pt))
    return theta_loss + phi_loss, aux


def should_write(mc: MCPOConfig, d_new_psi, d_old_psi, n_updates):
    """Eq. 2 (Alg. 1 line 7): write theta if D(theta, psi) > D(theta_old, psi); or the
    ablations' unconditional rules (every minibatch / every k minibatches)."""
    if mc.write_rule == "diversity":
        return d_new_psi > d_old_psi
    if mc.write_rule == "every":
        return jnp.asarray(True)
    k = int(mc.write_rule.split(":")[1])
    return (n_updates % k) == 0


def make_update(cfg, policy):
    mc: MCPOConfig = cfg.algo_config
    tx, tx_attn = make_optimizer(cfg), _attn_tx(cfg)
    objective = jax.value_and_grad(
        lambda p, a, algo, mb: mcpo_objective(p, a, algo, mb, policy=policy, mc=mc,
                                              vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                                              norm_adv=cfg.norm_adv),
        argnums=(0, 1), has_aux=True)

    def step(state: TrainState, mb):
        algo: MCPOState = state.algo
        (_, aux), (g_theta, g_attn) = objective(state.params, algo.attn, algo, mb)
        # theta step (Eq. 3) with psi fixed
        upd, opt_state = tx.update(g_theta, state.opt_state, state.params)
        params = optax.apply_updates(state.params, upd)
        # phi step (Eq. 5) with theta and the memory fixed
        if mc.psi_rule == "attention":
            upd_a, attn_opt_state = tx_attn.update(g_attn, algo.attn_opt_state, algo.attn)
            attn = optax.apply_updates(algo.attn, upd_a)
        else:
            attn, attn_opt_state = algo.attn, algo.attn_opt_state
        # Eq. 2: diversity-promoting writing of the new theta, then psi_old <- psi
        n_updates = state.n_updates + 1
        d_new = policy.dist_params(params["actor"], mb.obs)
        d_new_psi = jnp.mean(policy.dist.kl(d_new, aux["d_psi"]))
        write = should_write(mc, d_new_psi, aux["d_old_psi"], n_updates)
        memory = M.memory_write(algo.memory, params["actor"], write)
        new_algo = algo._replace(memory=memory, psi_old=aux["psi"], attn=attn,
                                 attn_opt_state=attn_opt_state)
        info = {k: aux[k] for k in ("theta_loss", "phi_loss", "alpha", "d_old_theta",
                                    "d_old_psi", "policy_loss", "value_loss", "entropy",
                                    "attn_objective", "kl_psi_theta", "approx_kl", "clipfrac",
                                    "context")}
        info.update(beta=aux["beta"],
                    beta_max_frac=aux["beta_is_max"].astype(jnp.float32),
                    memory_write=write.astype(jnp.float32),
                    attn_weights=M.weights_by_age(aux["weights"], algo.memory),
                    grad_norm=optax.global_norm(g_theta), attn_grad_norm=optax.global_norm(g_attn))
        return state._replace(params=params, opt_state=opt_state, algo=new_algo,
                              n_updates=n_updates), info

    def update(state: TrainState, batch):
        key, k_perm = jax.random.split(state.key)
        writes_before = state.algo.memory.writes
        state, info = minibatch_epochs(state._replace(key=key), batch, k_perm,
                                       cfg.update_epochs, cfg.num_minibatches, step)
        stats = mean_over_steps(info)
        stats.update(batch_diagnostics(policy, state.params, batch))
        mem = state.algo.memory
        stats.update(memory_writes=mem.writes - writes_before,
                     memory_fill=jnp.sum(mem.mask).astype(jnp.int32),
                     attn_argmax=jnp.argmax(stats["attn_weights"]).astype(jnp.int32))
        if mc.beta_rule == "adaptive":  # PPO paper §4's rule, on the whole batch
            state = state._replace(algo=state.algo._replace(
                beta=adapt_beta(state.algo.beta, stats["kl_old_new"], mc.kl_target)))
        elif mc.beta_rule == "annealed":  # beta for the next iteration
            progress = state.n_updates / total_optimizer_steps(cfg)
            state = state._replace(algo=state.algo._replace(
                beta=annealed_beta(progress, mc.beta_max).astype(jnp.float32)))
        return state, stats

    return update


@dataclass(frozen=True)
class MCPOMeanConfig(MCPOConfig):
    """'Mean psi' (paper §4.3, Table 2): psi is the mean of the memory, no attention network."""

    attn_hidden: int = param(64, "unused by mcpo-mean", low=1, high=65536, cli=False)
    attn_learning_rate: float = param(3e-4, "unused by mcpo-mean", low=0.0, low_open=True,
                                      high=1.0, cli=False)
    context: str = param("full", "unused by mcpo-mean", choices=("full", "half"), cli=False)
    psi_rule: str = param("mean", "psi is the mean of M.", choices=("mean",), cli=False)


SPEC = AlgoSpec("mcpo", MCPOConfig, init, make_update,
                "Memory-Constrained Policy Optimization (virtual trust region)")
SPEC_MEAN = AlgoSpec("mcpo-mean", MCPOMeanConfig, init, make_update,
                     "MCPO with psi = mean of the policy memory (no attention)")
