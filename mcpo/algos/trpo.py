"""TRPO (Schulman et al. 2015, "Trust Region Policy Optimization"; docs/design.md §5; paper §2).

Per rollout batch, inside one jitted update:

1. Policy: maximize the surrogate L(theta) = E[tau_t(theta) A_t] (+ c_e H) subject to
   D(theta_old, theta) = E_t KL[pi_old || pi_theta] <= delta (`--max-kl`), on the whole batch,
   once per iteration (Schulman et al. 2015, Appendix C):
   * g = grad L at theta_old; s ~= F^-1 g by `cg_iters` conjugate-gradient steps on
     (F + damping I) s = g, with Fisher-vector products F v = J^T M J v (J: Jacobian of the
     per-state distribution parameters, M: Hessian of the closed-form mean KL in its second
     argument at pi_old; this is exactly the Hessian of D at theta_old);
   * full step beta s with beta = sqrt(2 delta / s^T (F + damping I) s);
   * backtracking line search: theta_old + b^i beta s for i = 0, 1, ... (b = --ls-backtrack,
     0.5), accepting the first step whose measured KL <= delta AND whose surrogate improves;
     if none does, theta stays.
2. Critic: trained separately with Adam (the common --learning-rate) on the value loss over
   --update-epochs x --num-minibatches minibatches (`minibatch_epochs`), as in the PPO
   harness. The optimizer state in TrainState is the critic's alone. With a shared trunk
   (Atari's Nature CNN, whose trunk is part of the actor) the critic step trains the value
   head on the new actor's trunk features: the trunk moves only by the policy's trust-region
   step, so the KL constraint still bounds every change of the policy (our reading).

Readings we chose: the surrogate improvement must be > 0 (Schulman's modular_rl code also asks
for >= 10% of the linearly predicted improvement; the paper's Appendix C only says the line
search checks the nonlinear objective and the constraint); the step scale uses the damped
matrix, the same one CG solves with; advantages are normalized over the whole batch when
--norm-adv is on (the policy step sees the batch as one minibatch).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from mcpo.algos.common import (AlgoSpec, TrainState, batch_diagnostics, make_optimizer,
                               mean_over_steps, minibatch_epochs, normalize, value_loss)
from mcpo.types import param


@dataclass(frozen=True)
class TRPOConfig:
    max_kl: float = param(0.01, "TRPO trust-region radius delta: mean KL[pi_old || pi] per "
                          "policy step (Schulman et al. 2015 use 0.01).", low=0.0,
                          low_open=True, high=10.0)
    cg_iters: int = param(10, "Conjugate-gradient iterations for F^-1 g.", low=1, high=100)
    cg_damping: float = param(0.1, "Damping added to the Fisher matrix in CG (F + damping I).",
                              low=0.0, high=1e3)
    ls_max_steps: int = param(10, "Backtracking line-search steps (each shrinks the step by "
                              "--ls-backtrack); none accepted: the policy stays.", low=1,
                              high=50)
    ls_backtrack: float = param(0.5, "Line-search step shrink factor.", low=0.0, high=1.0,
                                low_open=True, high_open=True)


# ----------------------------------------------------------------------------------------------
# Pieces (pure, tested one by one in tests/test_trpo.py)
# ----------------------------------------------------------------------------------------------
def conjugate_gradient(matvec: Callable, b, iters: int, tol: float = 1e-10):
    """Solve A x = b for SPD A given only `matvec` (Nocedal & Wright, Alg. 5.2), a fixed
    number of iterations; once r^T r <= tol the iterate is frozen. Returns (x, r^T r)."""

    def body(_, c):
        x, r, p, rr = c
        Ap = matvec(p)
        live = rr > tol
        alpha = jnp.where(live, rr / jnp.maximum(p @ Ap, 1e-30), 0.0)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = jnp.where(live, r + (rr_new / jnp.maximum(rr, 1e-30)) * p, p)
        return x, r, p, jnp.where(live, rr_new, rr)

    x0 = jnp.zeros_like(b)
    x, _, _, rr = jax.lax.fori_loop(0, iters, body, (x0, b, b, b @ b))
    return x, rr


def make_fvp(policy, actor, obs, damping: float):
    """v -> (F + damping I) v for the flat actor parameters, F = Hessian of the mean
    closed-form KL[pi_actor || pi_theta] at theta = actor, as J^T M J (Gauss-Newton form,
    exact at theta_old where the KL's first derivative vanishes). Returns (fvp, flat, unravel)."""
    flat, unravel = ravel_pytree(actor)
    dist_of = lambda f: policy.dist_params(unravel(f), obs)  # noqa: E731
    d_old, jvp_fn = jax.linearize(dist_of, flat)
    vjp_fn = jax.vjp(dist_of, flat)[1]
    d_old = jax.lax.stop_gradient(d_old)
    kl_grad = jax.grad(lambda q: jnp.mean(policy.dist.kl(d_old, q)))

    def fvp(v):
        jv = jvp_fn(v)                                       # J v
        mjv = jax.jvp(kl_grad, (d_old,), (jv,))[1]           # M J v (KL Hessian in q at q = p)
        return vjp_fn(mjv)[0] + damping * v                  # J^T M J v + damping v

    return fvp, flat, unravel


def line_search(surrogate: Callable, kl: Callable, theta, fullstep, max_kl: float,
                max_steps: int, backtrack: float):
    """Backtracking line search (Schulman et al. 2015, App. C): the first
    theta + backtrack^i fullstep, i < max_steps, with kl <= max_kl and surrogate improvement
    > 0; theta itself if none. Returns (new theta, info)."""
    f0 = surrogate(theta)

    def candidate(i):
        th = theta + backtrack ** i.astype(fullstep.dtype) * fullstep
        d, f = kl(th), surrogate(th)
        return th, d, f - f0, jnp.logical_and(d <= max_kl, f - f0 > 0.0)

    def cond(c):
        i, ok = c[0], c[1]
        return jnp.logical_and(i < max_steps, jnp.logical_not(ok))

    def body(c):
        i = c[0]
        th, d, imp, ok = candidate(i)
        # keep i where it was accepted; otherwise advance
        return (jnp.where(ok, i, i + 1), ok, th, d, imp)

    init = (jnp.asarray(0, jnp.int32), jnp.asarray(False), theta,
            jnp.asarray(0.0, theta.dtype), jnp.asarray(0.0, theta.dtype))
    i, ok, th, d, imp = jax.lax.while_loop(cond, body, init)
    new_theta = jnp.where(ok, th, theta)
    return new_theta, dict(accepted=ok.astype(jnp.float32), ls_steps=i,
                           ls_kl=jnp.where(ok, d, 0.0),
                           surrogate_improvement=jnp.where(ok, imp, 0.0))


def surrogate_fn(policy, unravel, batch, adv, ent_coef: float):
    """theta_flat -> E[tau_t(theta) A_t] + c_e E[H(pi_theta)] (paper §2, L_TRPO)."""

    def f(flat):
        dist = policy.dist_params(unravel(flat), batch.obs)
        ratio = jnp.exp(policy.dist.log_prob(dist, batch.actions) - batch.logp)
        return jnp.mean(ratio * adv) + ent_coef * jnp.mean(policy.dist.entropy(dist))

    return f


def trpo_policy_step(policy, actor, batch, tc: TRPOConfig, *, ent_coef: float,
                     norm_adv: bool):
    """One TRPO step of the actor on the whole batch. Returns (new actor, info)."""
    adv = normalize(batch.advantages, norm_adv)
    fvp, flat, unravel = make_fvp(policy, actor, batch.obs, tc.cg_damping)
    surrogate = surrogate_fn(policy, unravel, batch, adv, ent_coef)
    mean_kl = lambda f: jnp.mean(policy.dist.kl(batch.dist,  # noqa: E731
                                                policy.dist_params(unravel(f), batch.obs)))
    g = jax.grad(surrogate)(flat)
    s, cg_rr = conjugate_gradient(fvp, g, tc.cg_iters)         # s ~= (F + lambda I)^-1 g
    shs = jnp.maximum(s @ fvp(s), 1e-12)
    beta = jnp.sqrt(2.0 * tc.max_kl / shs)                     # beta = sqrt(2 delta / s^T F s)
    fullstep = beta * s
    new_flat, info = line_search(surrogate, mean_kl, flat, fullstep, tc.max_kl,
                                 tc.ls_max_steps, tc.ls_backtrack)
    # logged like the other methods' policy_loss: -E[tau A] at the new actor, no entropy term
    pg_loss = -surrogate_fn(policy, unravel, batch, adv, 0.0)(new_flat)
    info.update(policy_loss=pg_loss, expected_improvement=g @ fullstep,
                cg_residual=jnp.sqrt(cg_rr),
                policy_grad_norm=jnp.linalg.norm(g), step_norm=jnp.linalg.norm(new_flat - flat))
    return unravel(new_flat), info


# ----------------------------------------------------------------------------------------------
# Algorithm
# ----------------------------------------------------------------------------------------------
def init(cfg, policy, key) -> TrainState:
    key, k_net = jax.random.split(key)
    params = policy.init(k_net)
    # The optimizer state is the critic's: the actor moves by the natural-gradient step.
    return TrainState(params=params, opt_state=make_optimizer(cfg).init(params["critic"]),
                      algo=(), key=key, n_updates=jnp.zeros((), jnp.int32))


def make_update(cfg, policy):
    tc: TRPOConfig = cfg.algo_config
    tx = make_optimizer(cfg)

    def critic_step(carry, mb, actor):
        critic, opt_state = carry
        v_loss, grads = jax.value_and_grad(
            lambda c: value_loss(policy, {"actor": actor, "critic": c}, mb))(critic)
        updates, opt_state = tx.update(grads, opt_state, critic)
        return (optax.apply_updates(critic, updates), opt_state), dict(
            value_loss=v_loss, grad_norm=optax.global_norm(grads))

    def update(state: TrainState, batch):
        key, k_perm = jax.random.split(state.key)
        actor, pinfo = trpo_policy_step(policy, state.params["actor"], batch, tc,
                                        ent_coef=cfg.ent_coef, norm_adv=cfg.norm_adv)
        (critic, opt_state), cinfo = minibatch_epochs(
            (state.params["critic"], state.opt_state), batch, k_perm, cfg.update_epochs,
            cfg.num_minibatches, partial(critic_step, actor=actor))
        n_steps = cfg.update_epochs * cfg.num_minibatches
        state = state._replace(params={"actor": actor, "critic": critic}, opt_state=opt_state,
                               key=key, n_updates=state.n_updates + n_steps)
        dist = policy.dist_params(actor, batch.obs)
        stats = dict(mean_over_steps(cinfo), **pinfo,
                     entropy=jnp.mean(policy.dist.entropy(dist)))
        stats.update(batch_diagnostics(policy, state.params, batch))
        return state, stats

    return update


SPEC = AlgoSpec("trpo", TRPOConfig, init, make_update,
                "TRPO: natural gradient (CG) + KL line search")
