"""MCPO's policy memory M and attention network f_phi (paper §3.1; docs/design.md §4).

M is a FIFO ring buffer of N actor-parameter pytrees (leading axis N) with a validity mask.
Writing is O(1) (one slot); the *age* of a physical slot is derived from the write pointer, and
the attention network's N outputs are indexed by age (output 0 = newest policy, N-1 = oldest),
so "which output is attended" always means "how old a policy is attended" (the paper's Fig. 1c),
whatever slot the ring buffer keeps it in.

Everything is fixed-shape and branch-free (`jnp.where`), so it runs inside the jitted update.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mcpo.networks import init_mlp, mlp


class Memory(NamedTuple):
    params: object     # actor pytree, each leaf with leading axis N
    mask: jax.Array    # (N,) bool, True where a slot holds a policy
    ptr: jax.Array     # int32, the physical slot the next write goes to
    writes: jax.Array  # int32, total writes so far


def memory_init(actor, capacity: int) -> Memory:
    """M holds theta_old as its only entry (docs/design.md §4: an empty M has no psi)."""
    params = jax.tree.map(
        lambda x: jnp.zeros((capacity,) + x.shape, x.dtype).at[0].set(x), actor)
    mask = jnp.zeros((capacity,), bool).at[0].set(True)
    return Memory(params, mask, jnp.asarray(1 % capacity, jnp.int32), jnp.zeros((), jnp.int32))


def capacity(mem: Memory) -> int:
    return mem.mask.shape[0]


def memory_write(mem: Memory, actor, do_write) -> Memory:
    """Append `actor` if `do_write` (a traced bool); when full the oldest entry is replaced."""
    slot = mem.ptr
    params = jax.tree.map(
        lambda m, x: m.at[slot].set(jnp.where(do_write, x, m[slot])), mem.params, actor)
    mask = mem.mask.at[slot].set(jnp.logical_or(mem.mask[slot], do_write))
    ptr = jnp.where(do_write, (mem.ptr + 1) % capacity(mem), mem.ptr)
    return Memory(params, mask, ptr.astype(jnp.int32), mem.writes + do_write.astype(jnp.int32))


def slot_ages(mem: Memory) -> jax.Array:
    """Age of each physical slot: 0 for the newest write, N-1 for the oldest.

    The map i -> (ptr - 1 - i) mod N is its own inverse, so the same array also gives the
    physical slot holding each age."""
    n = capacity(mem)
    return (mem.ptr - 1 - jnp.arange(n)) % n


def attention_weights(logits_by_age, mem: Memory) -> jax.Array:
    """Softmax over the valid slots; returns weights per *physical* slot (0 on empty slots)."""
    logits = logits_by_age[slot_ages(mem)]
    logits = jnp.where(mem.mask, logits, -jnp.inf)
    return jax.nn.softmax(logits)


def weights_by_age(weights, mem: Memory) -> jax.Array:
    """Physical-slot weights reordered by age (index 0 = newest)."""
    return weights[slot_ages(mem)]


@jax.custom_vjp
def _mix_leaf(w, m):
    return jnp.tensordot(w, m, axes=1)


def _mix_leaf_fwd(w, m):
    return _mix_leaf(w, m), m


def _mix_leaf_bwd(m, g):
    # d psi / d w_i = theta_i: the weights' gradient as the matrix-vector product
    # (N, P) @ (P,), which reads m as stored. Autodiff's product contracts m over its
    # leading axis and XLA CPU copied and transposed each memory leaf for it, every
    # minibatch (~8 % of MCPO's HalfCheetah update, measured). The memory gets no gradient
    # (it is a constant of the update): a zero cotangent that nothing reads.
    n = m.shape[0]
    return m.reshape(n, -1) @ g.reshape(-1), jnp.zeros_like(m)


_mix_leaf.defvjp(_mix_leaf_fwd, _mix_leaf_bwd)


def mix(weights, stacked_params):
    """Eq. 1: psi = sum_i w_i theta_i, leaf by leaf (log-std included). Reverse-mode only
    (custom VJP); the memory is treated as a constant."""
    return jax.tree.map(lambda m: _mix_leaf(weights, m), stacked_params)


def mean_weights(mem: Memory) -> jax.Array:
    """'Mean psi': uniform weights over the valid slots (no attention network)."""
    w = mem.mask.astype(jnp.float32)
    return w / jnp.sum(w)


def attention_init(key, context_dim: int, capacity_: int, hidden: int, slot_dim: int = 0):
    """phi. `slot_dim` > 0 adds our extension (not the paper's): a second MLP scoring each
    slot from its own content features (`slot_dim` per slot), shared across slots."""
    # Small output gain: the initial attention is close to uniform over valid slots.
    params = {"mlp": init_mlp(key, (context_dim, hidden, capacity_), out_gain=0.01)}
    if slot_dim:
        params["slot"] = init_mlp(jax.random.fold_in(key, 1), (slot_dim, hidden, 1),
                                  out_gain=0.01)
    return params


def attention_logits(attn_params, context, slot_feats=None) -> jax.Array:
    """f_phi(v): an MLP from the context vector to N logits (indexed by age); with the
    per-slot extension, plus a shared score of each slot's content features (N, F) by age."""
    logits = mlp(attn_params["mlp"], context)
    if "slot" in attn_params:
        logits = logits + mlp(attn_params["slot"], slot_feats)[:, 0]
    return logits


def entropy(weights) -> jax.Array:
    """Entropy of an attention vector in nats (empty slots, weight 0, contribute 0)."""
    safe = jnp.where(weights > 0, weights, 1.0)
    return -jnp.sum(weights * jnp.log(safe))


def attention_diagnostics(weights, mem: Memory) -> dict:
    """What one minibatch's attention does, in unambiguous terms (docs/design.md §4):
    entropy (nats), the age of the most attended policy (writes made since it was stored),
    the paper's 1-based index j* under both conventions (newest stored last, j* = fill - age,
    as a queue appended at the end; or newest first, j* = age + 1), and the newest's weight."""
    by_age = weights_by_age(weights, mem)
    age = jnp.argmax(by_age)
    fill = jnp.sum(mem.mask)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return {"attn_entropy": entropy(weights), "attn_argmax_age": f32(age),
            "attn_jstar_newest_last": f32(fill - age),
            "attn_jstar_newest_first": f32(age + 1), "attn_weight_newest": by_age[0]}


def stacked_dist_params(policy, stacked_params, obs):
    """Each memory slot's distribution parameters on `obs`: (N, B, ...) (physical order)."""
    return jax.vmap(lambda p: policy.dist_params(p, obs))(stacked_params)
