"""ACKTR (Wu et al. 2017, "Scalable trust-region method for deep reinforcement learning using
Kronecker-factored approximation"; docs/design.md §5): the A2C loss, stepped by a K-FAC natural
gradient for actor and critic with a KL-clipped step size, one step per rollout batch.

K-FAC (Martens & Grosse 2015) per dense layer s = a W + b, with a_bar = [a, 1]:
    F_layer ~= A (x) G,   A = E[a_bar a_bar^T],   G = E[g g^T],   g = d log p(y|x) / d s,
y sampled from the model itself (the true Fisher, not the empirical one): for the actor an
action a ~ pi(.|s); the critic's output is read as N(V(s), 1), y = V(s) + N(0, 1), whose Fisher
is the Gauss-Newton matrix of the squared error (Wu et al. 2017, §3.2). A Gaussian policy's
state-independent log-std is a bias with constant input 1 (A = [[1]]). A and G are running
averages (the first batch initializes them). (A (x) G + damping I)^-1 grad is computed exactly
in the eigenbases of A and G, damping added to the eigenvalue products as in the authors' code
(Martens & Grosse's factored Tikhonov damping, by Cholesky solves, was no faster here and solved
CartPole for 2 of seeds 1-3 instead of 3). Actor and critic are disjoint networks, so F is
block diagonal across them.

Step size (Wu et al. 2017, §3.3, after Ba et al. 2017): with Delta = F^-1 grad,
eta = min(eta_max, sqrt(2 delta / (Delta^T F Delta))), and Delta^T F Delta = Delta^T grad.
Readings we chose:
* One trust region over actor and critic (Delta^T F Delta summed over all blocks), as the
  authors' released code does. The paper allows separate (eta_max, delta) for disjoint
  networks; the same pair applied to each network separately learned less reliably here
  (CartPole solved for 1 of seeds 1-3 vs 3; Pendulum gains 410/126/520 vs 951/248/833). The
  critic's share of the sum is logged as vFv_critic.
* --acktr-kl-clip is the paper's delta. The code writes min(1, sqrt(kfac_clip /
  (eta_max^2 Delta^T grad))), so its kfac_clip = 0.001 is 2 delta; we take 0.001 as delta, so
  our steps are up to sqrt(2) longer than the code's.
* eta_max 0.25, damping 0.01, statistics decay 0.99 and momentum 0.9 on the clipped step are
  the code's defaults. Left out: its 10 plain-SGD warm-up steps (our first batch initializes the
  factors, so the natural gradient is defined from step 1) and asynchronous eigendecompositions.

Why not `kfac-jax` (DeepMind, PyPI): 0.0.8 fails on jax 0.10.2 at the first curvature update
(its graph matcher unpacks `Primitive.get_bind_params` as a pair; that API now returns a dict),
it pulls in distrax and tfp-nightly, and its optimizer has no KL-clipped step size. Our networks
are plain tanh MLPs, so the dense-layer K-FAC below is short and fully tested.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mcpo.algos.a2c import a2c_loss, require_one_step_per_batch
from mcpo.algos.common import AlgoSpec, TrainState, batch_diagnostics
from mcpo.distributions import DiagGaussian
from mcpo.networks import MLPActorCritic, one_matrix_at_a_time
from mcpo.types import ConfigError, param


@dataclass(frozen=True)
class ACKTRConfig:
    acktr_lr: float = param(0.25, "eta_max, the largest K-FAC step size (Wu et al. 2017; "
                            "linearly decayed with --anneal-lr). ACKTR does not use "
                            "--learning-rate.", low=0.0, low_open=True, high=10.0)
    acktr_kl_clip: float = param(0.001, "Trust-region radius delta: the step size is "
                                 "min(eta_max, sqrt(2 delta / Delta^T F Delta)).", low=0.0,
                                 low_open=True, high=10.0)
    kfac_damping: float = param(0.01, "K-FAC damping lambda in (A (x) G + lambda I)^-1.",
                                low=0.0, low_open=True, high=1e3)
    kfac_stats_decay: float = param(0.99, "Running-average decay of the Kronecker factors.",
                                    low=0.0, high=1.0, high_open=True)
    kfac_momentum: float = param(0.9, "Momentum on the clipped natural-gradient step.",
                                 low=0.0, high=1.0, high_open=True)

    def validate(self, cfg) -> None:
        require_one_step_per_batch(cfg, "acktr", "K-FAC")


class ACKTRState(NamedTuple):
    A: dict          # per block: E[a_bar a_bar^T], running average
    G: dict          # per block: E[g g^T], running average
    velocity: dict   # momentum buffer, parameter-shaped


# ----------------------------------------------------------------------------------------------
# Parameters <-> per-layer blocks
# ----------------------------------------------------------------------------------------------
def to_blocks(tree) -> dict:
    """Parameter-shaped pytree -> {"actor": [(in+1, out)...], "critic": [...], "log_std"?:
    (1, act)}: each dense layer's weight with its bias as the last row."""
    def mats(layers):
        return [jnp.concatenate([layer["w"], layer["b"][None]], 0) for layer in layers]

    out = {"actor": mats(tree["actor"]["mlp"]), "critic": mats(tree["critic"]["mlp"])}
    if "log_std" in tree["actor"]:
        out["log_std"] = tree["actor"]["log_std"][None]
    return out


def from_blocks(blocks: dict) -> dict:
    def layers(ms):
        return [{"w": m[:-1], "b": m[-1]} for m in ms]

    actor = {"mlp": layers(blocks["actor"])}
    if "log_std" in blocks:
        actor["log_std"] = blocks["log_std"][0]
    return {"actor": actor, "critic": {"mlp": layers(blocks["critic"])}}


# ----------------------------------------------------------------------------------------------
# Kronecker factors from the model's own sampled Fisher
# ----------------------------------------------------------------------------------------------
def mlp_with_taps(layers, x, eps):
    """The tanh MLP of mcpo.networks.mlp with `eps[i]` added to layer i's pre-activation
    (zeros: d/d eps = d/d pre-activation); also returns each layer's input."""
    inputs = []
    for i, (layer, e) in enumerate(zip(layers, eps)):
        inputs.append(x)
        x = x @ layer["w"] + layer["b"] + e
        if i < len(layers) - 1:
            x = jnp.tanh(x)
    return x, inputs


def sampled_fisher_taps(policy, params, obs, key):
    """Per-example g = d log p(y|x) / d s for every block, with y sampled from the model
    (actor: a ~ pi(.|s); critic: y ~ N(V(s), 1)), and every block's input a_bar.
    Returns (g_blocks, abar_blocks, (actions, value targets))."""
    B = obs.shape[0]
    obs = policy.encode(obs)  # a fixed encoder (MiniGrid's one-hot) is the first block's input

    def zeros(layers):
        return [jnp.zeros((B, layer["b"].shape[0]), obs.dtype) for layer in layers]

    def with_bias(xs):
        return [jnp.concatenate([x, jnp.ones((B, 1), x.dtype)], 1) for x in xs]

    eps = {"actor": zeros(params["actor"]["mlp"]), "critic": zeros(params["critic"]["mlp"])}
    gaussian = isinstance(policy.dist, DiagGaussian)
    if gaussian:
        eps["log_std"] = jnp.zeros((B, policy.dist.act_dim), obs.dtype)
    k_pi, k_v = jax.random.split(key)

    def loglik(eps):
        out, a_in = mlp_with_taps(params["actor"]["mlp"], obs, eps["actor"])
        if gaussian:
            log_std = jnp.broadcast_to(params["actor"]["log_std"], out.shape) + eps["log_std"]
            dist = jnp.concatenate([out, log_std], axis=-1)
        else:
            dist = out
        y = jax.lax.stop_gradient(policy.dist.sample(k_pi, dist))
        v, c_in = mlp_with_taps(params["critic"]["mlp"], obs, eps["critic"])
        v = v[:, 0]
        y_v = jax.lax.stop_gradient(v + jax.random.normal(k_v, v.shape, v.dtype))
        ll = policy.dist.log_prob(dist, y) - 0.5 * jnp.square(v - y_v)  # log p, N(V, 1)
        return jnp.sum(ll), (a_in, c_in, y, y_v)

    g, (a_in, c_in, y, y_v) = jax.grad(loglik, has_aux=True)(eps)
    abar = {"actor": with_bias(a_in), "critic": with_bias(c_in)}
    if gaussian:
        abar["log_std"] = jnp.ones((B, 1), obs.dtype)
    return g, abar, (y, y_v)


def kronecker_factors(g_blocks, abar_blocks):
    """A = E[a_bar a_bar^T], G = E[g g^T] per block (means over the batch)."""
    second_moment = lambda x: x.T @ x / x.shape[0]  # noqa: E731
    return jax.tree.map(second_moment, abar_blocks), jax.tree.map(second_moment, g_blocks)


# eigh one matrix at a time when the update is vmapped over seeds: batched, jaxlib's LAPACK
# kernel can deadlock XLA's CPU thread pool (mcpo.networks.one_matrix_at_a_time). A lambda:
# sequential_vmap cannot take jnp.linalg.eigh itself, whose keyword options are static.
_eigh = one_matrix_at_a_time(lambda m: jnp.linalg.eigh(m))


def precondition(grad, A, G, damping: float):
    """(A (x) G + damping I)^-1 vec(grad) for grad of shape (in+1, out) (row-major vec),
    exactly: with A = Q_A diag(e_A) Q_A^T and G = Q_G diag(e_G) Q_G^T, A (x) G + damping I has
    eigenvectors Q_A (x) Q_G and eigenvalues e_A e_G^T + damping."""
    e_a, q_a = _eigh(A)
    e_g, q_g = _eigh(G)
    e = jnp.maximum(e_a, 0.0)[:, None] * jnp.maximum(e_g, 0.0)[None, :]
    return q_a @ ((q_a.T @ grad @ q_g) / (e + damping)) @ q_g.T


def kl_clipped_step_size(eta_max, delta, vFv):
    """Wu et al. 2017 §3.3: eta = min(eta_max, sqrt(2 delta / (Delta^T F Delta)))."""
    return jnp.minimum(eta_max, jnp.sqrt(2.0 * delta / jnp.maximum(vFv, 1e-20)))


# ----------------------------------------------------------------------------------------------
# Algorithm
# ----------------------------------------------------------------------------------------------
def check_policy(policy) -> None:
    """ACKTR's K-FAC here has dense-layer blocks only (MLP actor and critic)."""
    if not isinstance(policy, MLPActorCritic):
        raise ConfigError(
            f"--algo acktr supports MLP networks only (vector observations and MiniGrid); this "
            f"env's observations need the {type(policy).__name__} (a shared convolutional "
            f"trunk), and our K-FAC has no convolution blocks (Grosse & Martens 2016's "
            f"KFC, used by Wu et al. 2017 on Atari, is not implemented). Use --algo a2c, ppo, "
            f"trpo or mcpo on this env.")


def init(cfg, policy, key) -> TrainState:
    check_policy(policy)
    key, k_net = jax.random.split(key)
    params = policy.init(k_net)
    blocks = to_blocks(params)
    A = jax.tree.map(lambda m: jnp.zeros((m.shape[0],) * 2, m.dtype), blocks)
    G = jax.tree.map(lambda m: jnp.zeros((m.shape[1],) * 2, m.dtype), blocks)
    algo = ACKTRState(A=A, G=G, velocity=jax.tree.map(jnp.zeros_like, params))
    return TrainState(params=params, opt_state=(), algo=algo, key=key,
                      n_updates=jnp.zeros((), jnp.int32))


def make_update(cfg, policy):
    ac: ACKTRConfig = cfg.algo_config
    n_total = max(1, cfg.num_iterations)  # one step per iteration (validated)

    def loss(params, mb):
        return a2c_loss(params, (), mb, policy=policy, vf_coef=cfg.vf_coef,
                        ent_coef=cfg.ent_coef, norm_adv=cfg.norm_adv)

    def update(state: TrainState, batch):
        key, k_fisher = jax.random.split(state.key)
        st: ACKTRState = state.algo
        params = state.params
        # Kronecker factors A = E[a_bar a_bar^T], G = E[g g^T] of this batch (M&G 2015),
        # folded into the running averages
        g, abar, _ = sampled_fisher_taps(policy, params, batch.obs, k_fisher)
        A_new, G_new = kronecker_factors(g, abar)
        first = state.n_updates == 0
        rho = ac.kfac_stats_decay
        ema = lambda old, new: jnp.where(first, new, rho * old + (1.0 - rho) * new)  # noqa
        A, G = jax.tree.map(ema, st.A, A_new), jax.tree.map(ema, st.G, G_new)
        # Delta = (A (x) G + damping I)^-1 grad of the A2C loss, block by block
        (_, info), grads = jax.value_and_grad(loss, has_aux=True)(params, batch)
        grad_b = to_blocks(grads)
        nat_b = jax.tree.map(lambda gr, a, gg: precondition(gr, a, gg, ac.kfac_damping),
                             grad_b, A, G)
        # Delta^T F Delta = Delta^T grad, per network and summed (one trust region)
        vFv_part = {k: sum(jnp.sum(n * gr) for n, gr in zip(jax.tree.leaves(nat_b[k]),
                                                            jax.tree.leaves(grad_b[k])))
                    for k in nat_b}
        vFv = sum(vFv_part.values())
        frac = 1.0 - state.n_updates.astype(jnp.float32) / n_total
        eta_max = ac.acktr_lr * (jnp.maximum(frac, 0.0) if cfg.anneal_lr else 1.0)
        eta = kl_clipped_step_size(eta_max, ac.acktr_kl_clip, vFv)   # Wu et al. 2017 §3.3
        # momentum on the clipped step; theta <- theta - velocity
        mu = ac.kfac_momentum
        step = from_blocks(nat_b)
        velocity = jax.tree.map(lambda v, s: mu * v + (1.0 - mu) * eta * s, st.velocity, step)
        params = jax.tree.map(lambda p, v: p - v, params, velocity)
        state = state._replace(params=params, algo=ACKTRState(A, G, velocity), key=key,
                               n_updates=state.n_updates + 1)
        stats = dict(info, effective_lr=eta, learning_rate=eta_max, vFv=vFv,
                     vFv_critic=vFv_part["critic"],
                     kl_clipped=(eta < eta_max).astype(jnp.float32),
                     predicted_kl=0.5 * eta * eta * vFv,
                     grad_norm=jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(grads))))
        stats.update(batch_diagnostics(policy, params, batch))
        return state, stats

    return update


# One K-FAC step per batch, on A2C's rollout shape (Wu et al. 2017 build on A2C's
# synchronous workers); the K-FAC statistics are estimated on each batch of 8 x 32.
SPEC = AlgoSpec("acktr", ACKTRConfig, init, make_update,
                "ACKTR: K-FAC natural gradient, KL-clipped step",
                defaults=dict(update_epochs=1, num_minibatches=1, num_envs=8, num_steps=32))
