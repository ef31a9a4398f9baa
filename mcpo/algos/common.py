"""What every algorithm's update shares: the learner state, the optimizer, the K-epoch x
minibatch loop (one `lax.scan` inside one jitted call), the surrogate pieces and diagnostics.

An algorithm module supplies a pure loss `(params, algo_state, minibatch) -> (loss, info)` and
optionally a `post_update` hook; `make_minibatch_update` turns them into the whole update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from mcpo.networks import forward_dist_params
from mcpo.rollout import Batch


class TrainState(NamedTuple):
    """The learner state: a pytree, saved whole in a checkpoint."""

    params: Any        # {"actor": ..., "critic": ...}
    opt_state: Any
    algo: Any          # algorithm-specific state (KL beta, MCPO memory, ...), a pytree
    key: jax.Array
    n_updates: jax.Array  # optimizer steps taken (int32)


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    config_cls: type
    init: Callable       # (cfg: TrainConfig, policy, key) -> TrainState
    make_update: Callable  # (cfg, policy) -> update(state, batch) -> (state, stats)
    summary: str
    # The algorithm's own defaults for shared TrainConfig fields (e.g. A2C's one epoch and one
    # minibatch), layered over a family preset's shared values by mcpo.presets.make_config.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # (cfg, policy) -> objects with mcpo.trainer.Callback's methods that the trainer runs with
    # the user's callbacks (an algorithm cannot import the trainer): e.g. MCPO's psi evaluation.
    make_callbacks: Callable | None = None
    # make_update takes `batched=True` when it will run vmapped over seeds (the JAX backends)
    # and computes differently then (MCPO: no lax.cond; same numbers up to rounding).
    batched_update: bool = False


# The optimizer-step counter (TrainState.n_updates, optax's schedule count) is an int32.
MAX_OPTIMIZER_STEPS = 2**31 - 1


def total_optimizer_steps(cfg) -> int:
    return max(1, cfg.num_iterations * cfg.update_epochs * cfg.num_minibatches)


def learning_rate_at(cfg, n_updates: int) -> float:
    """The learning rate after `n_updates` optimizer steps (what `make_optimizer` schedules)."""
    if not cfg.anneal_lr:
        return cfg.learning_rate
    return cfg.learning_rate * max(1.0 - n_updates / total_optimizer_steps(cfg), 0.0)


def make_optimizer(cfg, learning_rate: float | None = None) -> optax.GradientTransformation:
    """Adam with global-norm clipping; linear decay to 0 over training if `anneal_lr`."""
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    if cfg.anneal_lr:
        lr = optax.linear_schedule(lr, 0.0, total_optimizer_steps(cfg))
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                       optax.adam(lr, eps=cfg.adam_eps))


def init_train_state(cfg, policy, key, algo_state_fn=lambda params: ()) -> TrainState:
    key, k_net = jax.random.split(key)
    params = policy.init(k_net)
    return TrainState(params=params, opt_state=make_optimizer(cfg).init(params),
                      algo=algo_state_fn(params), key=key, n_updates=jnp.zeros((), jnp.int32))


# ----------------------------------------------------------------------------------------------
# Epochs x minibatches
# ----------------------------------------------------------------------------------------------
def stable_argsort_u32(keys):
    """`jnp.argsort(keys, stable=True)` of a 1-D uint32 array, as an LSD radix sort whose
    passes each sort ONE uint32 array of distinct values (digit, position): XLA's CPU sort of a
    single integer operand is ~5x faster than its key-value sort (measured)."""
    n = keys.shape[0]
    b = max(1, (n - 1).bit_length())  # bits of a position
    d = 32 - b                         # bits of a digit beside it
    pos = jnp.arange(n, dtype=jnp.uint32)
    order = pos
    for shift in range(0, 32, d):
        digit = (keys[order] >> shift) & jnp.uint32((1 << d) - 1)
        order = order[jax.lax.sort((digit << b) | pos) & jnp.uint32((1 << b) - 1)]
    return order.astype(jnp.int32)


def permutation(key, n: int):
    """`jax.random.permutation(key, n)`, the same values (its rounds of sorting by random
    uint32 keys, jax 0.10.2), with the stable sorts done by `stable_argsort_u32`: the epochs'
    shuffles of PPO's Pendulum update 6.7 -> 2.6 ms (measured)."""
    rounds = math.ceil(3 * math.log(max(1, n)) / math.log(2**32 - 1))
    x = jnp.arange(n)
    for _ in range(rounds):
        key, sub = jax.random.split(key)
        x = x[stable_argsort_u32(jax.random.bits(sub, (n,), jnp.uint32))]
    return x


def minibatch_epochs(carry, batch, key, n_epochs: int, n_minibatches: int, step_fn,
                     with_next: bool = False, unroll: int = 1):
    """Run `step_fn(carry, minibatch) -> (carry, info)` over `n_epochs` random partitions of
    the batch (any pytree of arrays with the samples first) into `n_minibatches`; one nested
    `lax.scan`. Returns (carry, info stacked (n_epochs, n_minibatches, ...)). `with_next`:
    step_fn gets (minibatch, the epoch's next minibatch), the last one paired with the first.
    `unroll`: of the minibatch scan."""
    B = jax.tree.leaves(batch)[0].shape[0]
    mb = B // n_minibatches
    # All epochs' permutations in one batched call before the loop, the same permutations as
    # one call per epoch (measured: PPO's Pendulum update -5%).
    perms = jax.vmap(lambda k: permutation(k, B))(jax.random.split(key, n_epochs))

    # The per-step diagnostics leave each step as ONE float32 vector: the scan writes every
    # output array with a kernel of its own per step (MCPO's ~25 scalars: ~9 % of its step's
    # kernels). `layout` is filled when the step is traced; same values, unpacked below.
    layout = []

    def packed_step(c, xs):
        c, info = step_fn(c, xs)
        leaves, treedef = jax.tree.flatten(info)
        packed = [i for i, x in enumerate(leaves) if x.dtype == jnp.float32]
        layout[:] = [treedef, [(x.shape, x.dtype) for x in leaves], packed]
        vec = (jnp.concatenate([jnp.ravel(leaves[i]) for i in packed]) if packed
               else jnp.zeros((0,), jnp.float32))
        return c, (vec, [x for i, x in enumerate(leaves) if i not in packed])

    def epoch(c, perm):
        shuffled = jax.tree.map(
            lambda x: jnp.take(x, perm, axis=0).reshape((n_minibatches, mb) + x.shape[1:]),
            batch)
        if with_next:
            shuffled = (shuffled, jax.tree.map(lambda x: jnp.roll(x, -1, axis=0), shuffled))
        return jax.lax.scan(packed_step, c, shuffled, unroll=unroll)

    carry, (vec, others) = jax.lax.scan(epoch, carry, perms)
    treedef, specs, packed = layout
    lead, others, leaves, at = vec.shape[:2], iter(others), [], 0
    for i, (shape, dtype) in enumerate(specs):
        if i in packed:
            size = math.prod(shape)
            leaves.append(vec[..., at:at + size].reshape(lead + shape))
            at += size
        else:
            leaves.append(next(others))
    return carry, jax.tree.unflatten(treedef, leaves)


def mean_over_steps(info: dict) -> dict:
    """Average per-minibatch diagnostics over epochs and minibatches."""
    return {k: jnp.mean(v, axis=(0, 1)) for k, v in info.items()}


# ----------------------------------------------------------------------------------------------
# Surrogate pieces
# ----------------------------------------------------------------------------------------------
def normalize(x, enabled: bool = True):
    if not enabled:
        return x
    return (x - x.mean()) / (x.std() + 1e-8)


class PolicyTerms(NamedTuple):
    dist: jax.Array      # current distribution parameters
    logp: jax.Array
    logratio: jax.Array  # log pi_theta - log pi_old
    ratio: jax.Array     # tau_t(theta)


def policy_terms(policy, actor, mb: Batch, dist=None) -> PolicyTerms:
    """The current policy's terms on the minibatch (`dist`: its parameters, if computed)."""
    if dist is None:
        dist = policy.dist_params(actor, mb.obs)
    logp = policy.dist.log_prob(dist, mb.actions)
    logratio = logp - mb.logp
    return PolicyTerms(dist, logp, logratio, jnp.exp(logratio))


def policy_value_terms(policy, params, mb: Batch) -> tuple[PolicyTerms, jax.Array]:
    """(PolicyTerms, V(s)) from one forward (`policy.dist_and_value`): with a trunk shared by
    the policy and value heads (Atari's CNN) the gradient then passes through it once."""
    dist, v = policy.dist_and_value(params, mb.obs)
    return policy_terms(policy, params["actor"], mb, dist), v


def value_loss(policy, params, mb: Batch, v=None):
    """0.5 E[(V(s) - R)^2]; `params` whole (the value may read a trunk shared with the actor);
    `v`: V(s) on the minibatch, if computed (`policy_value_terms`)."""
    if v is None:
        v = policy.value(params, mb.obs)
    return 0.5 * jnp.mean(jnp.square(v - mb.returns))


def ratio_diagnostics(pt: PolicyTerms, clip_coef: float = 0.2) -> dict:
    """CleanRL's approx-KL estimator and the fraction of ratios outside [1-c, 1+c]."""
    return {"approx_kl": jnp.mean((pt.ratio - 1.0) - pt.logratio),
            "clipfrac": jnp.mean((jnp.abs(pt.ratio - 1.0) > clip_coef).astype(jnp.float32))}


def explained_variance(values, returns):
    var = jnp.var(returns)
    return jnp.where(var > 0, 1.0 - jnp.var(returns - values) / var, jnp.nan)


def batch_diagnostics(policy, params, batch: Batch) -> dict:
    """After the update, on the whole batch: D(theta_old, theta) and explained variance."""
    dist = forward_dist_params(policy, params["actor"], batch.obs)
    return {"kl_old_new": jnp.mean(policy.dist.kl(batch.dist, dist)),
            "explained_variance": explained_variance(batch.values, batch.returns)}


def all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def finite_leaves(state) -> dict:
    """{leaf path: all finite} over the floating-point leaves of the learner state."""
    return {jax.tree_util.keystr(p): all_finite(x)
            for p, x in jax.tree_util.tree_leaves_with_path(state)
            if jnp.issubdtype(x.dtype, jnp.floating)}


# ----------------------------------------------------------------------------------------------
# The optimizer on one flat vector
# ----------------------------------------------------------------------------------------------
class Flat(NamedTuple):
    """Parameters and optimizer state with every parameter-shaped pytree raveled to one vector
    (`flatten`), and `unravel`: vector -> parameter pytree."""

    params: jax.Array
    opt_state: Any
    unravel: Callable


def _shaped_like(tree) -> Callable:
    treedef = jax.tree.structure(tree)
    return lambda x: jax.tree.structure(x) == treedef


def flatten(params, opt_state) -> Flat:
    """Ravel the parameters and the optimizer state's parameter-shaped parts (Adam's moments).

    Adam and global-norm clipping are elementwise or global, so the optimizer gives the same
    result on the vector (to float summation order); its loop then runs a few kernels per
    step instead of a few per leaf (measured: PPO's Pendulum update -11%)."""
    flat, unravel = ravel_pytree(params)
    like = _shaped_like(params)
    opt_flat = jax.tree.map(lambda x: ravel_pytree(x)[0] if like(x) else x, opt_state,
                            is_leaf=like)
    return Flat(flat, opt_flat, unravel)


def unflatten(flat: Flat, like_opt_state) -> tuple[Any, Any]:
    """(params, opt_state) back in the layout of `like_opt_state` (the state `flatten` took):
    the learner state and its checkpoints keep their pytree layout."""
    params = flat.unravel(flat.params)
    like = _shaped_like(params)
    opt_state = jax.tree.map(lambda t, f: flat.unravel(f) if like(t) else f, like_opt_state,
                             flat.opt_state, is_leaf=like)
    return params, opt_state


# ----------------------------------------------------------------------------------------------
# The generic first-order update (PPO, KL-Fixed, KL-Adaptive, ...)
# ----------------------------------------------------------------------------------------------
def make_minibatch_update(cfg, policy, loss_fn, post_update=None):
    """Build `update(state, batch) -> (state, stats)` from a pure loss.

    loss_fn(params, algo_state, mb) -> (loss, info); post_update(state, batch) ->
    (state, stats) runs once after the K epochs (e.g. KL-Adaptive's beta rule). The epochs
    run on the flat parameter vector (`flatten`); the loss sees the parameter pytree.
    """
    tx = make_optimizer(cfg)

    def update(state: TrainState, batch: Batch):
        start = flatten(state.params, state.opt_state)

        def step(carry, mb: Batch):
            params, opt_state, n = carry
            (_, info), grads = jax.value_and_grad(
                lambda p: loss_fn(start.unravel(p), state.algo, mb), has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            info = dict(info, grad_norm=optax.global_norm(grads))
            return (params + updates, opt_state, n + 1), info

        key, k_perm = jax.random.split(state.key)
        # two minibatch steps per loop iteration (measured: PPO's Pendulum update -5%)
        (params, opt_state, n), info = minibatch_epochs(
            (start.params, start.opt_state, state.n_updates), batch, k_perm, cfg.update_epochs,
            cfg.num_minibatches, step, unroll=2)
        params, opt_state = unflatten(start._replace(params=params, opt_state=opt_state),
                                      state.opt_state)
        state = state._replace(params=params, opt_state=opt_state, key=key, n_updates=n)
        stats = mean_over_steps(info)
        stats.update(batch_diagnostics(policy, state.params, batch))
        if post_update is not None:
            state, extra = post_update(state, batch, stats)
            stats.update(extra)
        return state, stats

    return update
