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

The defaults are the paper's reading but for one: f_phi also scores each memory slot from its
own content (--attn-slot-features, our extension, on by default since the evidence of
docs/design.md §4.1 and benchmarks/RESULTS.md §6: the paper's context-only attention collapses
onto the newest slot; with slot features it stays alive at equal or better returns).
--no-attn-slot-features is the paper-literal setting. The other fixes are flags, off by
default: --context-norm, --context-returns, --alpha-adv, --alpha-temp, and our labelled
extensions --attn-objective next-minibatch, --attn-ent-coef.
Diagnostics (attention entropy, the attended policy's age and j*, ...) are always logged;
--eval-psi-every K evaluates psi against theta_old (paper Fig. 1b; mcpo.algos.psi_eval).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mcpo.algos import context_norm as CN
from mcpo.algos import memory as M
from mcpo.algos import psi_eval
from mcpo.algos.common import (AlgoSpec, TrainState, batch_diagnostics, flatten,
                               init_train_state, make_optimizer, mean_over_steps,
                               minibatch_epochs, normalize, policy_value_terms,
                               ratio_diagnostics, total_optimizer_steps, unflatten, value_loss)
from mcpo.algos.kl import adapt_beta
from mcpo.networks import dense, forward_dist_params
from mcpo.types import ConfigError, flag_name, param

# Context features (Eq. 1's v; the paper's Table 4 is not available, docs/design.md §4 fixes these).
# D(a, b) = E_t KL[pi_a || pi_b]; R(x) = E_t[tau_t(x) A_t]; H(x) = E_t entropy of pi_x.
# Note R(theta_old) = E_t[A_t], which is 0 when advantages are normalized per minibatch.
CONTEXT_FULL = ("D_old_theta", "D_old_psiold", "D_psiold_theta",
                "R_theta", "R_old", "R_psiold",
                "H_theta", "H_old", "H_psiold", "value_loss")
# "Half features" ablation (paper §4.5 does not say which half; our choice): distances and the
# returns of theta and psi_old.
CONTEXT_HALF = ("D_old_theta", "D_old_psiold", "D_psiold_theta", "R_theta", "R_psiold")

# Our extension (--attn-slot-features): per memory slot i, on the minibatch, R(theta_i) with
# the --context-returns signal, D(theta_old, theta_i) and D(theta_i, theta), each z-scored
# across the valid slots.
SLOT_FEATURES = ("R_slot", "D_old_slot", "D_slot_theta")
# The signal S in the context's return features R(x) = E_t[tau_t(x) S_t].
CONTEXT_RETURNS = ("normalized", "raw", "return")
ATTN_OBJECTIVES = ("same-minibatch", "next-minibatch")

ALPHA_RULES = ("learned", "fixed:0", "fixed:0.5", "fixed:1")
WRITE_RULES = ("diversity", "every", "interval:10", "interval:100")
BETA_RULES = ("switching", "annealed", "adaptive")


@dataclass(frozen=True)
class MCPOConfig:
    # Added after runs existed (a config.json without them used these defaults).
    ADDED_FIELDS: ClassVar[frozenset] = frozenset({
        "context_norm", "context_norm_decay", "context_returns", "alpha_adv", "alpha_temp",
        "attn_objective", "attn_slot_features", "attn_ent_coef", "eval_psi_every",
        "eval_psi_episodes"})
    # Defaults changed since: a saved config without the field used this value.
    FORMER_DEFAULTS: ClassVar[dict] = {"attn_slot_features": False}

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
    # Fixes for the literal reading (docs/design.md §4): off by default but for the slot features.
    context_norm: str = param("none", "Normalize the context v before f_phi (our fix): 'none' "
                              "(paper), 'running' (z-score over all minibatches so far) or "
                              "'ema' (exponentially weighted, --context-norm-decay); clipped "
                              "to +-5, statistics saved in the checkpoint.",
                              choices=CN.MODES)
    context_norm_decay: float = param(0.999, "Per-minibatch decay of --context-norm ema (a "
                                      "window of ~1/(1-decay) minibatches).", low=0.0,
                                      high=1.0, low_open=True, high_open=True)
    context_returns: str = param("normalized", "Signal S in the context's returns R(x) = "
                                 "E[tau(x) S]: 'normalized' advantages (paper; then "
                                 "R(theta_old) = E[A] = 0), 'raw' advantages, or 'return' "
                                 "(value targets: R(theta_old) = theta_old's mean return on "
                                 "the minibatch).", choices=CONTEXT_RETURNS)
    alpha_adv: str = param("normalized", "Advantage in alpha_t's R_t: 'normalized' per "
                           "minibatch (as in the theta step; paper) or 'raw'.",
                           choices=("normalized", "raw"))
    alpha_temp: float = param(1.0, "Temperature T: alpha_t = sigmoid((R_t(psi) - "
                              "R_t(theta_old)) / T); 1 is the paper's.", low=1e-6, high=1e6)
    attn_objective: str = param("same-minibatch", "Data the phi step's L2 (Eq. 5) is scored "
                                "on: the 'same-minibatch' theta steps on (paper), or (our "
                                "extension) the 'next-minibatch' of this epoch, which theta "
                                "has not been trained on yet in this epoch.",
                                choices=ATTN_OBJECTIVES)
    attn_slot_features: bool = param(True, "Our extension, on by default (docs/design.md "
                                     "§4.1): f_phi also scores each memory slot from its own "
                                     "content (R, D(theta_old, slot), D(slot, theta) on the "
                                     "minibatch), so it can choose by content, not only by "
                                     "position; --no-attn-slot-features is the paper's "
                                     "context-only attention.")
    attn_ent_coef: float = param(0.0, "Our extension: entropy bonus on the attention weights "
                                 "in the phi step (0: none).", low=0.0, high=1e3)
    eval_psi_every: int = param(0, "Every K iterations test psi (the last minibatch's "
                                "virtual policy), theta_old and the updated theta on an env "
                                "and seeds of their own, deterministic and stochastic (paper "
                                "Fig. 1b); columns eval_{psi,old,theta}_return_{det,stoch}. "
                                "0: never. Training is unaffected.", low=0, high=10**9)
    eval_psi_episodes: int = param(10, "Episodes per policy and mode for --eval-psi-every.",
                                   low=1, high=10**6)

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
    # context_norm.ContextStats, or () (no leaves: the checkpoint layout of runs without
    # --context-norm is unchanged, so their older checkpoints still resume)
    ctx_norm: object = ()


def _attn_tx(cfg):
    return make_optimizer(cfg, learning_rate=cfg.algo_config.attn_learning_rate)


def init(cfg, policy, key) -> TrainState:
    key, k_attn = jax.random.split(key)
    mc = cfg.algo_config

    def algo_state(params):
        theta_old = params["actor"]
        attn = M.attention_init(k_attn, len(mc.context_names), mc.memory_size, mc.attn_hidden,
                                len(SLOT_FEATURES) if mc.attn_slot_features else 0)
        # Alg. 1 line 1: psi_old <- theta_old, theta <- theta_old; M = [theta_old].
        return MCPOState(memory=M.memory_init(theta_old, mc.memory_size), psi_old=theta_old,
                         attn=attn, attn_opt_state=_attn_tx(cfg).init(attn),
                         beta=jnp.asarray(annealed_beta(0.0, mc.beta_max)
                                          if mc.beta_rule == "annealed" else mc.kl_beta,
                                          jnp.float32),
                         ctx_norm=(CN.init(len(mc.context_names))
                                   if mc.context_norm != "none" else ()))

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


def return_signal(mc: MCPOConfig, mb, adv):
    """S in the context's return features R(x) = E_t[tau_t(x) S_t] (--context-returns)."""
    return {"normalized": adv, "raw": mb.advantages, "return": mb.returns}[mc.context_returns]


def slot_rows(policy, d, mb) -> jax.Array:
    """What the slot features need of one policy, per state of `mb`, that does not depend on
    theta: [its distribution parameters d (B, P), log pi(a|s), KL(pi_old || pi)] (B, P + 2)."""
    return jnp.concatenate([d, policy.dist.log_prob(d, mb.actions)[:, None],
                            policy.dist.kl(mb.dist, d)[:, None]], axis=-1)


def slot_features(policy, params, memory, mb, signal, rows=None) -> jax.Array:
    """Our extension: each slot's content on the minibatch (SLOT_FEATURES), z-scored across the
    valid slots and clipped to +-5; (N, 3) indexed by age, 0 for empty slots (stop-gradient).
    `rows`: the slots' `slot_rows` on the minibatch (N, B, P + 2), if known (the update's
    cache); else computed here."""
    if rows is None:
        rows = jax.vmap(lambda d: slot_rows(policy, d, mb))(
            M.stacked_dist_params(policy, memory.params, mb.obs))
    d_slots, logp, kl_old = rows[..., :-2], rows[..., -2], rows[..., -1]
    d_theta = policy.dist_params(params["actor"], mb.obs)
    tau = jnp.exp(jnp.clip(logp - mb.logp, -20.0, 20.0))
    feats = jnp.stack([jnp.mean(tau * signal, axis=1), jnp.mean(kl_old, axis=1),
                       jnp.mean(jax.vmap(lambda d: policy.dist.kl(d, d_theta))(d_slots),
                                axis=1)], axis=-1)                       # (N, 3)
    valid = memory.mask[:, None]
    n = jnp.maximum(jnp.sum(memory.mask), 1)
    mean = jnp.sum(jnp.where(valid, feats, 0.0), axis=0) / n
    std = jnp.sqrt(jnp.sum(jnp.where(valid, jnp.square(feats - mean), 0.0), axis=0) / n)
    z = jnp.where(valid, jnp.clip((feats - mean) / jnp.maximum(std, 1e-8), -5.0, 5.0), 0.0)
    return jax.lax.stop_gradient(z[M.slot_ages(memory)])


def virtual_policy_weights(mc: MCPOConfig, attn, memory, context, slot_feats=None):
    """Attention weights per physical slot: f_phi(v) masked to valid slots, or the mean."""
    if mc.psi_rule == "mean":
        return M.mean_weights(memory)
    return M.attention_weights(M.attention_logits(attn, context, slot_feats), memory)


def alpha_weights(mc: MCPOConfig, logp_psi, logp_old, adv):
    """alpha_t = exp(R_t(psi)) / (exp(R_t(psi)) + exp(R_t(theta_old))) with R_t(x) = tau_t(x)A_t
    and tau_t(theta_old) = 1, i.e. sigmoid(tau_t(psi) A_t - A_t); per sample, stop-gradient.
    --alpha-temp T divides the difference by T (T = 1: the paper's)."""
    if mc.alpha_rule != "learned":
        return jnp.full_like(adv, float(mc.alpha_rule.split(":")[1]))
    # The log-ratio is clipped only to keep exp finite (|log tau| > 20 never occurs in practice).
    tau_psi = jnp.exp(jnp.clip(logp_psi - logp_old, -20.0, 20.0))
    diff = tau_psi * adv - adv
    if mc.alpha_temp != 1.0:
        diff = diff / mc.alpha_temp
    return jax.lax.stop_gradient(jax.nn.sigmoid(diff))


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
                   ent_coef, norm_adv, mb_phi=None, slot_rows_mb=None):
    """Eq. 6 as a loss: -(L1(theta) + L2(phi)) + c_v L_V - c_e H.

    psi is held fixed in L1 and the context v is constant in L2, so the gradient w.r.t. theta
    is L1's alone and the gradient w.r.t. phi is L2's alone (tests/test_mcpo.py checks both).
    `mb_phi`: the minibatch L2 is scored on (--attn-objective next-minibatch); default `mb`.
    `slot_rows_mb`: the memory slots' `slot_rows` on `mb`, if cached (`make_update`).
    """
    dist = policy.dist
    adv = normalize(mb.advantages, norm_adv)
    context = context_features(policy, params, algo.psi_old, mb, return_signal(mc, mb, adv),
                               mc.context_names)
    ctx_stats, attn_in = algo.ctx_norm, context
    if mc.context_norm != "none":  # our fix: f_phi sees a z-score of v (mcpo.algos.context_norm)
        ctx_stats = CN.update(algo.ctx_norm, context, mc.context_norm, mc.context_norm_decay)
        attn_in = CN.apply(ctx_stats, context)
    slot_feats = None
    if mc.attn_slot_features and mc.psi_rule == "attention":
        slot_feats = slot_features(policy, params, algo.memory, mb, return_signal(mc, mb, adv),
                                   slot_rows_mb)
    # Eq. 1: psi = sum_i f_phi(v)_i theta_i   (memory entries are constants)
    w = virtual_policy_weights(mc, attn, algo.memory, attn_in, slot_feats)
    psi = M.mix(w, jax.lax.stop_gradient(algo.memory.params))
    # dense: psi's weight gradient (towards phi) as a YNNPACK matmul (mcpo.networks.dense)
    d_psi = policy.dist_params(psi, mb.obs, layer=dense)
    logp_psi = dist.log_prob(d_psi, mb.actions)

    pt, v = policy_value_terms(policy, params, mb)
    d_psi_fixed = jax.lax.stop_gradient(d_psi)
    alpha_adv = adv if mc.alpha_adv == "normalized" else mb.advantages
    alpha = alpha_weights(mc, jax.lax.stop_gradient(logp_psi), mb.logp, alpha_adv)
    kl_old = dist.kl(mb.dist, pt.dist)       # KL[pi_theta_old || pi_theta]
    kl_psi = dist.kl(d_psi_fixed, pt.dist)   # KL[pi_psi || pi_theta]
    # Eq. 4 with the current theta (before its step) and psi.
    d_old_theta = jax.lax.stop_gradient(jnp.mean(kl_old))
    d_old_psi = jnp.mean(dist.kl(mb.dist, d_psi_fixed))
    beta, beta_is_max = select_beta(mc, algo, d_old_theta, d_old_psi)
    # Eq. 3: L1 = E[tau(theta) A] - beta E[(1 - alpha) KL[old||theta] + alpha KL[psi||theta]]
    l1 = jnp.mean(pt.ratio * adv) - beta * jnp.mean((1.0 - alpha) * kl_old + alpha * kl_psi)
    # Eq. 5: L2 = E[R_t(psi_phi)] = E[tau_t(psi_phi) A_t]
    if mb_phi is None:
        l2 = jnp.mean(jnp.exp(logp_psi - mb.logp) * adv)
    else:  # our extension: scored on data theta has not stepped on yet in this epoch
        logp_psi_phi = dist.log_prob(policy.dist_params(psi, mb_phi.obs, layer=dense),
                                     mb_phi.actions)
        l2 = jnp.mean(jnp.exp(logp_psi_phi - mb_phi.logp)
                      * normalize(mb_phi.advantages, norm_adv))
    v_loss = value_loss(policy, params, mb, v)
    entropy = jnp.mean(dist.entropy(pt.dist))
    theta_loss = -l1 + vf_coef * v_loss - ent_coef * entropy
    phi_loss = -l2
    if mc.attn_ent_coef > 0:  # our extension: keep the attention from collapsing to one slot
        phi_loss = phi_loss - mc.attn_ent_coef * M.entropy(w)
    aux = dict(theta_loss=theta_loss, phi_loss=phi_loss, psi=jax.lax.stop_gradient(psi),
               d_psi=d_psi_fixed, weights=jax.lax.stop_gradient(w), alpha=jnp.mean(alpha),
               beta=beta, beta_is_max=beta_is_max, d_old_theta=d_old_theta,
               d_old_psi=d_old_psi, policy_loss=-l1, value_loss=v_loss, entropy=entropy,
               attn_objective=l2, kl_psi_theta=jnp.mean(kl_psi), context=context,
               ctx_norm=ctx_stats, **ratio_diagnostics(pt))
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


def caches_slots(mc: MCPOConfig, batched: bool) -> bool:
    """Whether the update keeps the slots' outputs on the whole batch (`make_update`): with
    slot features, unless vmapped over seeds (`batched`) or written so often ('every',
    'interval:k' with k < 4) that rewriting a slot on the whole batch costs more than the N
    forwards per minibatch it replaces. Vmapped, lax.cond becomes a select that pays for
    the rewrite every time; a cond on "any seed wrote" (a psum over the seed axis) was
    slower still: 5 seeds x 1M Pendulum in 242 s against 200 s without the cache."""
    if not (mc.attn_slot_features and mc.psi_rule == "attention") or batched:
        return False
    return mc.write_rule == "diversity" or (mc.write_rule.startswith("interval:")
                                            and int(mc.write_rule.split(":")[1]) >= 4)


def make_update(cfg, policy, batched: bool = False):
    """The update (pure; jit it). `batched`: it will run vmapped over seeds (the JAX
    backends), which changes how it computes, not what."""
    mc: MCPOConfig = cfg.algo_config
    tx, tx_attn = make_optimizer(cfg), _attn_tx(cfg)
    next_mb = mc.attn_objective == "next-minibatch"
    # The slot features need every memory slot's outputs on each minibatch: N actor forwards
    # per minibatch, which doubled the update's cost. The slots change only on a write (~2 %
    # of minibatches on HalfCheetah), so on the host path the slots' outputs on the whole
    # batch are computed once per update, gathered per minibatch and recomputed for the
    # written slot only (lax.cond). Same numbers up to float rounding (tests/test_mcpo.py).
    cache = caches_slots(mc, batched)

    def update(state: TrainState, batch):
        # theta and phi, with their Adam states, run the epochs as flat vectors
        # (common.flatten; the losses see the pytrees): fewer kernels per optimizer step.
        th = flatten(state.params, state.opt_state)
        ph = flatten(state.algo.attn, state.algo.attn_opt_state)

        def batch_slot_rows(actor):
            """The slot cache's rows of one stored policy: its `slot_rows` on the batch."""
            return slot_rows(policy, forward_dist_params(policy, actor, batch.obs), batch)

        def objective(theta, phi, algo, mb, mb_phi, rows_mb):
            """Eq. 6's value and gradients w.r.t. the flat theta and phi (`update`'s th, ph)."""
            return jax.value_and_grad(
                lambda t, f: mcpo_objective(
                    th.unravel(t), ph.unravel(f), algo, mb, policy=policy, mc=mc,
                    vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef, norm_adv=cfg.norm_adv,
                    mb_phi=mb_phi, slot_rows_mb=rows_mb),
                argnums=(0, 1), has_aux=True)(theta, phi)

        def step(carry, xs):
            (theta, opt_state, phi, attn_opt_state, algo, n_updates), slots = carry
            (mb, rows), mb_phi = xs if next_mb else (xs, None)
            if mb_phi is not None:
                mb_phi = mb_phi[0]
            rows_mb = None if slots is None else slots[:, rows]
            (_, aux), (g_theta, g_attn) = objective(theta, phi, algo, mb, mb_phi, rows_mb)
            # theta step (Eq. 3) with psi fixed
            upd, opt_state = tx.update(g_theta, opt_state, theta)
            theta = theta + upd
            # phi step (Eq. 5) with theta and the memory fixed
            if mc.psi_rule == "attention":
                upd_a, attn_opt_state = tx_attn.update(g_attn, attn_opt_state, phi)
                phi = phi + upd_a
            # Eq. 2: diversity-promoting writing of the new theta, then psi_old <- psi
            n_updates = n_updates + 1
            actor = th.unravel(theta)["actor"]
            d_new = forward_dist_params(policy, actor, mb.obs)
            d_new_psi = jnp.mean(policy.dist.kl(d_new, aux["d_psi"]))
            write = should_write(mc, d_new_psi, aux["d_old_psi"], n_updates)
            memory = algo.memory  # the diagnostics below read the memory psi was mixed from
            new_algo = algo._replace(memory=M.memory_write(memory, actor, write),
                                     psi_old=aux["psi"], ctx_norm=aux["ctx_norm"])
            if slots is not None:  # the written slot's outputs on the whole batch
                slots = jax.lax.cond(
                    write, lambda c: c.at[memory.ptr].set(batch_slot_rows(actor)),
                    lambda c: c, slots)
            info = {k: aux[k] for k in ("theta_loss", "phi_loss", "alpha", "d_old_theta",
                                        "d_old_psi", "policy_loss", "value_loss", "entropy",
                                        "attn_objective", "kl_psi_theta", "approx_kl",
                                        "clipfrac", "context")}
            info.update(beta=aux["beta"],
                        beta_max_frac=aux["beta_is_max"].astype(jnp.float32),
                        memory_write=write.astype(jnp.float32),
                        attn_weights=M.weights_by_age(aux["weights"], memory),
                        grad_norm=optax.global_norm(g_theta),
                        attn_grad_norm=optax.global_norm(g_attn),
                        **M.attention_diagnostics(aux["weights"], memory))
            return ((theta, opt_state, phi, attn_opt_state, new_algo, n_updates), slots), info

        key, k_perm = jax.random.split(state.key)
        writes_before = state.algo.memory.writes
        # phi and its optimizer state travel in the carry, not in algo (stale there until the end)
        algo = state.algo._replace(attn=(), attn_opt_state=())
        slots = (jax.vmap(batch_slot_rows)(algo.memory.params) if cache
                 else None)                                               # (N, B, P + 2)
        # each minibatch's rows, to gather `slots` (None, an empty pytree, without the cache)
        rows = jnp.arange(batch.obs.shape[0]) if cache else None
        ((theta, opt_state, phi, attn_opt_state, algo, n_updates), _), info = minibatch_epochs(
            ((th.params, th.opt_state, ph.params, ph.opt_state, algo, state.n_updates), slots),
            (batch, rows), k_perm, cfg.update_epochs, cfg.num_minibatches, step,
            with_next=next_mb)
        params, opt_state = unflatten(th._replace(params=theta, opt_state=opt_state),
                                      state.opt_state)
        attn, attn_opt_state = unflatten(ph._replace(params=phi, opt_state=attn_opt_state),
                                         state.algo.attn_opt_state)
        state = state._replace(params=params, opt_state=opt_state, key=key, n_updates=n_updates,
                               algo=algo._replace(attn=attn, attn_opt_state=attn_opt_state))
        stats = mean_over_steps(info)
        # the raw scale of each context feature: its spread over this iteration's minibatches
        stats["context_std"] = jnp.std(info["context"], axis=(0, 1))
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

    # Settings of the attention network, which mcpo-mean does not have: refused unless default.
    UNUSED: ClassVar[tuple] = ("attn_hidden", "attn_learning_rate", "context", "context_norm",
                               "context_norm_decay", "context_returns", "attn_objective",
                               "attn_slot_features", "attn_ent_coef")

    attn_hidden: int = param(64, "unused by mcpo-mean", low=1, high=65536, cli=False)
    attn_learning_rate: float = param(3e-4, "unused by mcpo-mean", low=0.0, low_open=True,
                                      high=1.0, cli=False)
    context: str = param("full", "unused by mcpo-mean", choices=("full", "half"), cli=False)
    psi_rule: str = param("mean", "psi is the mean of M.", choices=("mean",), cli=False)
    context_norm: str = param("none", "unused by mcpo-mean", choices=CN.MODES, cli=False)
    context_norm_decay: float = param(0.999, "unused by mcpo-mean", low=0.0, high=1.0,
                                      low_open=True, high_open=True, cli=False)
    context_returns: str = param("normalized", "unused by mcpo-mean", choices=CONTEXT_RETURNS,
                                 cli=False)
    attn_objective: str = param("same-minibatch", "unused by mcpo-mean",
                                choices=ATTN_OBJECTIVES, cli=False)
    attn_slot_features: bool = param(False, "unused by mcpo-mean", cli=False)
    attn_ent_coef: float = param(0.0, "unused by mcpo-mean", low=0.0, high=1e3, cli=False)

    def validate(self, cfg) -> None:
        super().validate(cfg)
        for name in self.UNUSED:
            f = self.__dataclass_fields__[name]
            if getattr(self, name) != f.default:
                raise ConfigError(f"{flag_name(name)} does not apply to --algo mcpo-mean: psi "
                                  f"is the mean of the memory, there is no attention network "
                                  f"(got {getattr(self, name)!r}; use --algo mcpo).")


SPEC = AlgoSpec("mcpo", MCPOConfig, init, make_update,
                "Memory-Constrained Policy Optimization (virtual trust region)",
                make_callbacks=psi_eval.make_callbacks, batched_update=True)
SPEC_MEAN = AlgoSpec("mcpo-mean", MCPOMeanConfig, init, make_update,
                     "MCPO with psi = mean of the policy memory (no attention)",
                     make_callbacks=psi_eval.make_callbacks)
