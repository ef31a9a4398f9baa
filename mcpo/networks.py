"""Actor and critic networks as plain parameter pytrees and pure apply functions.

Parameters are nested dicts/lists of arrays, so MCPO can mix policies leaf by leaf
(psi = sum_i w_i theta_i, `jax.tree.map`). The MLP apply is written against an array module
`xp`, so the same function runs jitted in JAX for the update and in NumPy on a host copy of the
parameters during the rollout (a jitted call costs ~40-150 us of dispatch on CPU per step, the
NumPy forward of a 64x64 MLP ~15 us; see benchmarks/RESULTS.md).

Every policy has the same interface, used by the rollout and every algorithm:
`init(key) -> {"actor", "critic"}`, `dist_params(params["actor"], obs)`,
`value(params, obs)` (the whole params: a shared trunk lives in the actor),
`dist_and_value(params, obs)` (both from one forward: what the losses use),
`forward_only(fn, obs)` (how a pass that is never differentiated runs over a whole batch), and
the host-side sampling methods (`host_params`, `sample_noise`, `perturbation_np`,
`sample_perturbed_np`, `sample_np`, `mode_np`; optionally `sample_perturbed_async`, which
the rollout then overlaps with env steps, and `sample_terms_async`, whose theta_old terms the
batch then takes from the rollout). "The policy" -- what MCPO's memory stores and
mixes, what TRPO's natural gradient moves -- is always `params["actor"]`.

* `MLPActorCritic`: separate actor and critic MLPs (64-64 tanh) for vector observations, with
  an optional fixed `encoder` in front of both: MiniGrid's one-hot grid encoding
  (`MiniGridOneHot`, docs/design.md §3).
* `NatureCNNActorCritic`: Mnih et al. 2015's CNN trunk shared by a policy head and a value
  head (Atari). The trunk is part of the actor (so MCPO's memory stores trunk + policy head);
  the critic is the value head alone, and `value` runs it on the actor's trunk. Host-side
  sampling is a jitted JAX forward on the batch of envs (a NumPy CNN would be far slower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import sequential_vmap

from mcpo.distributions import Categorical, DiagGaussian, Distribution


def one_matrix_at_a_time(fn):
    """`fn` (a LAPACK call: QR, eigh), which under `jax.vmap` loops over the batch one matrix
    at a time instead of making one batched call. Why: jaxlib's CPU LAPACK kernels split a
    large enough batch over XLA's intra-op thread pool and wait for the pieces from inside
    that pool (`ParallelBatchMap`); when two such calls run at once -- XLA runs independent
    ops of a program side by side, or two devices' programs share the pool -- on a pool of
    two threads, both threads wait and nobody runs the pieces: the process deadlocks at 0 %
    CPU (jax 0.10.2, native stacks in docs/design.md §3.1). A vmapped group of seeds is what
    makes these calls batched; unbatched, a kernel runs inline on its thread. The numbers are
    the same either way (each matrix goes through the same LAPACK routine)."""
    return sequential_vmap(fn)


def orthogonal(gain: float):
    """`jax.nn.initializers.orthogonal(gain)`, its QR `one_matrix_at_a_time` over seeds."""
    init = jax.nn.initializers.orthogonal(gain)
    return lambda key, shape, dtype=jnp.float32: one_matrix_at_a_time(
        lambda k: init(k, shape, dtype))(key)


def init_mlp(key, sizes: tuple[int, ...], out_gain: float, hidden_gain: float = math.sqrt(2.0)):
    """Orthogonal init (gain sqrt 2 for hidden layers, `out_gain` for the last), zero biases."""
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        gain = out_gain if i == len(sizes) - 2 else hidden_gain
        w = orthogonal(gain)(k, (n_in, n_out), jnp.float32)
        layers.append({"w": w, "b": jnp.zeros((n_out,), jnp.float32)})
    return layers


@jax.custom_vjp
def dense(x, w, b):
    """x @ w + b with a hand-written VJP whose weight gradient x^T g reads an explicit copy
    of x^T. XLA CPU sends the matmul that autodiff writes for it (both operands contracted
    over their leading, batch axis) to its generic dot emitter, not to the YNNPACK kernels
    the other matmuls get (measured: PPO's Pendulum update -10%, paired). First-order only:
    a custom_vjp function cannot be differentiated in forward mode (TRPO's jax.linearize of
    `dist_params` uses the plain layer)."""
    return x @ w + b


def _dense_fwd(x, w, b):
    return x @ w + b, (x, w)


def _dense_bwd(res, g):
    x, w = res
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])  # any leading batch axes
    # the barrier keeps XLA from folding the transpose back into the dot's dimension numbers
    xt = jax.lax.optimization_barrier(x2.T)
    return g @ w.T, xt @ g2, g2.sum(0)


dense.defvjp(_dense_fwd, _dense_bwd)


def mlp(layers, x, xp=jnp, layer=None):
    """tanh MLP; linear last layer. `xp` is jax.numpy or numpy; `layer(x, w, b)`: the dense
    layer (default x @ w + b; `dense` for a reverse-mode-only loss)."""
    for i, lay in enumerate(layers):
        # a one-output layer (value head) stays plain: its weight gradient is a matrix-vector
        # product, and autodiff's is faster there (measured: PPO Pendulum update -1.5%, paired)
        plain = layer is None or lay["w"].shape[-1] == 1
        x = x @ lay["w"] + lay["b"] if plain else layer(x, lay["w"], lay["b"])
        if i < len(layers) - 1:
            x = xp.tanh(x)
    return x


def one_hot(x, n: int, xp=jnp):
    """One-hot of integer array x over the last new axis (zeros where x is outside [0, n))."""
    return (x[..., None] == xp.arange(n)).astype(xp.float32)


@dataclass(frozen=True)
class MiniGridOneHot:
    """MiniGrid's packed observation (mcpo.envs.MiniGridObs: 7x7 cells x (object, colour,
    state) indices, then the direction) -> one-hot vector: per cell 11 + 6 + 3, then 4 for the
    direction (7*7*20 + 4 = 984). Followed by a dense layer this is a learned embedding of each
    (cell, object/colour/state) summed; the indices are categories, not magnitudes, so they are
    never fed as numbers (docs/design.md §3)."""

    cells: int = 49
    sizes: tuple[int, ...] = (11, 6, 3)   # minigrid's OBJECT_TO_IDX, COLOR_TO_IDX, STATE_TO_IDX
    directions: int = 4

    @property
    def dim(self) -> int:
        return self.cells * sum(self.sizes) + self.directions

    def dense_np(self, obs: np.ndarray, layer) -> np.ndarray:
        """one_hot(obs) @ w + b without building the one-hot: the sum of the rows of w that
        the 148 active entries select (NumPy, host-side sampling; a (16, 984) @ (984, 64)
        matmul costs ~100x more here when the BLAS threads compete for 2 busy cores).
        Indices must be in range, as MiniGrid's always are."""
        k = len(self.sizes)
        n = self.cells * k
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        cell_base = (np.arange(self.cells) * sum(self.sizes))[:, None] + offsets  # (cells, k)
        idx = obs[..., :n].astype(np.int64).reshape(obs.shape[:-1] + (self.cells, k))
        idx = (idx + cell_base).reshape(obs.shape[:-1] + (n,))
        idx = np.concatenate([idx, obs[..., -1:].astype(np.int64) + self.cells * sum(self.sizes)],
                             axis=-1)
        return np.asarray(layer["w"])[idx].sum(axis=-2) + layer["b"]

    def __call__(self, obs, xp=jnp):
        k = len(self.sizes)
        cells = obs[..., : self.cells * k].reshape(obs.shape[:-1] + (self.cells, k))
        parts = [one_hot(cells[..., i], n, xp) for i, n in enumerate(self.sizes)]
        grid = xp.concatenate(parts, axis=-1).reshape(obs.shape[:-1] + (-1,))
        return xp.concatenate([grid, one_hot(obs[..., -1], self.directions, xp)], axis=-1)


@dataclass(frozen=True)
class MLPActorCritic:
    """Separate actor and critic MLPs for vector observations (docs/design.md §3), after an
    optional fixed `encoder` (obs -> features; `obs_dim` is then the feature size)."""

    obs_dim: int
    dist: Distribution
    hidden_sizes: tuple[int, ...] = (64, 64)
    encoder: MiniGridOneHot | None = None

    def encode(self, obs, xp=jnp):
        return obs if self.encoder is None else self.encoder(obs, xp)

    def init(self, key):
        ka, kc = jax.random.split(key)
        hid = tuple(self.hidden_sizes)
        if isinstance(self.dist, DiagGaussian):
            actor = {"mlp": init_mlp(ka, (self.obs_dim, *hid, self.dist.act_dim), 0.01),
                     "log_std": jnp.zeros((self.dist.act_dim,), jnp.float32)}
        else:
            actor = {"mlp": init_mlp(ka, (self.obs_dim, *hid, self.dist.n), 0.01)}
        critic = {"mlp": init_mlp(kc, (self.obs_dim, *hid, 1), 1.0)}
        return {"actor": actor, "critic": critic}

    def dist_params(self, actor, obs, xp=jnp, layer=None):
        """Per-state distribution parameters (see mcpo.distributions); `layer`: `mlp`'s."""
        out = mlp(actor["mlp"], self.encode(obs, xp), xp, layer)
        if isinstance(self.dist, DiagGaussian):
            log_std = xp.broadcast_to(actor["log_std"], out.shape)
            return xp.concatenate([out, log_std], axis=-1)
        return out

    def value(self, params, obs, xp=jnp):
        """V(s); takes the whole params (a shared trunk would be in the actor)."""
        return mlp(params["critic"]["mlp"], self.encode(obs, xp), xp)[..., 0]

    def forward_only(self, fn, obs):
        """fn(obs) for a pass that is never differentiated (NatureCNNActorCritic chunks it;
        a 64x64 MLP gains nothing from that)."""
        return fn(obs)

    def dist_and_value(self, params, obs):
        """(dist_params, V) on the same states: what a loss needs from one forward. Its
        layers are `dense` (faster gradients; reverse mode only: no jvp/linearize of it)."""
        return (self.dist_params(params["actor"], obs, layer=dense),
                mlp(params["critic"]["mlp"], self.encode(obs), layer=dense)[..., 0])

    # Host-side sampling for the rollout (NumPy, no JAX dispatch) ----------------------------
    def host_params(self, actor):
        """The actor as the sampling methods take it: a NumPy copy."""
        return jax.tree.map(np.asarray, jax.device_get(actor))

    def sample_noise(self, rng: np.random.Generator, prefix: tuple) -> np.ndarray:
        """All the randomness a rollout's action sampling needs, drawn in one call."""
        return _sample_noise(self.dist, rng, prefix)

    def perturbation_np(self, actor_np, noise: np.ndarray) -> np.ndarray:
        """`sample_noise` output -> what is added to the actor's output to sample: std * eps
        (Gaussian reparameterization) or Gumbel noise -log(-log u) (Gumbel-max). Done for a
        whole rollout in one call; elementwise, so the actions equal per-step sampling."""
        return _perturbation(self.dist, actor_np, noise)

    def _forward_np(self, layers, obs: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            if obs.shape[0] == 1:  # one env: a row through 1-D dots, ~2.5 us of 6 less per step
                return _mlp_row_np(layers, obs[0])[None]
            return mlp(layers, obs, np)
        h = self.encoder.dense_np(obs, layers[0])  # = mlp's first layer on encode(obs)
        return mlp(layers[1:], np.tanh(h), np) if len(layers) > 1 else h

    def sample_perturbed_np(self, actor_np, obs: np.ndarray, perturbation: np.ndarray):
        """Actions for a batch of observations given `perturbation_np` output."""
        out = self._forward_np(actor_np["mlp"], obs)
        if isinstance(self.dist, DiagGaussian):
            return out + perturbation
        return np.argmax(out + perturbation, axis=-1)

    def sample_np(self, actor_np, obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Sample actions for a batch of observations given `sample_noise` output."""
        return self.sample_perturbed_np(actor_np, obs, self.perturbation_np(actor_np, noise))

    def mode_np(self, actor_np, obs: np.ndarray) -> np.ndarray:
        out = self._forward_np(actor_np["mlp"], obs)
        if isinstance(self.dist, Categorical):
            return np.argmax(out, axis=-1)
        return out


def _sample_noise(dist, rng: np.random.Generator, prefix: tuple) -> np.ndarray:
    if isinstance(dist, DiagGaussian):
        return rng.standard_normal(prefix + (dist.act_dim,), dtype=np.float32)
    return rng.random(prefix + (dist.n,), dtype=np.float32)


def _mlp_row_np(layers, x: np.ndarray) -> np.ndarray:
    """`mlp(layers, x[None], np)[0]` for one observation: NumPy's matrix-vector `dot` costs
    less per call than `@` on a (1, n) matrix, and at one row per env step the calls are
    the cost (measured: 3.9 vs 6.2 us for 64x64 on HalfCheetah)."""
    for i, lay in enumerate(layers):
        x = np.dot(x, lay["w"]) + lay["b"]
        if i < len(layers) - 1:
            x = np.tanh(x)
    return x


def _perturbation(dist, actor, noise: np.ndarray) -> np.ndarray:
    if isinstance(dist, DiagGaussian):
        return np.exp(np.asarray(actor["log_std"])) * noise
    return -np.log(-np.log(noise + 1e-20) + 1e-20)


# ---------------------------------------------------------------------------------------------
# Nature-DQN CNN with a shared trunk (Atari)
# ---------------------------------------------------------------------------------------------
# Mnih et al. 2015 (Nature), "Methods: model architecture": 32 8x8 filters stride 4, 64 4x4
# stride 2, 64 3x3 stride 1, each ReLU, then a 512-unit ReLU layer.
NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))  # (filters, kernel, stride)
NATURE_HIDDEN = 512


def _dense_init(key, n_in, n_out, gain):
    return {"w": orthogonal(gain)(key, (n_in, n_out), jnp.float32),
            "b": jnp.zeros((n_out,), jnp.float32)}


def conv2d_valid(x, w, stride: int):
    """VALID 2-D convolution, NHWC input, HWIO kernel, as one matmul over im2col patches.

    Same result as `jax.lax.conv_general_dilated` up to float summation order, but XLA's CPU
    backend runs it far faster where it matters: inside the update's scanned minibatch loop,
    lax's convolution took 178 s per PPO Atari iteration (16 minibatches of 256) against 5.9 s
    for this form, and its gradient is ~2x slower on its own (benchmarks/RESULTS.md §4.2)."""
    k, c, o = w.shape[0], x.shape[-1], w.shape[-1]
    h_out = (x.shape[1] - k) // stride + 1
    w_out = (x.shape[2] - k) // stride + 1
    span_h, span_w = stride * (h_out - 1) + 1, stride * (w_out - 1) + 1
    # patch feature order (kernel row, kernel column, channel) = the HWIO kernel's row order
    cols = [x[:, i:i + span_h:stride, j:j + span_w:stride, :] for i in range(k) for j in range(k)]
    patches = jnp.concatenate(cols, axis=-1).reshape(-1, k * k * c)
    return (patches @ w.reshape(k * k * c, o)).reshape(x.shape[0], h_out, w_out, o)


def forward_dist_params(policy, actor, obs):
    """The actor's distribution parameters on `obs` by `policy.forward_only`: for passes that
    are never differentiated (the diagnostics, MCPO's write test and slot cache)."""
    return policy.forward_only(lambda o: policy.dist_params(actor, o), obs)


# Frames per chunk of a forward-only pass (NatureCNNActorCritic.forward_only). Measured on
# 1,024 frames, dist_and_value: whole 473 ms; chunks of 256, 128, 64, 32, 16: 328, 274, 228,
# 209, 196 ms. 32 keeps a rollout's worth of frames to a few dozen chunks.
FORWARD_CHUNK = 32


def map_in_chunks(fn, x, chunk: int):
    """fn over the leading axis of x, `chunk` rows at a time (lax.map), outputs concatenated
    along that axis: fn(x) row for row, as long as fn treats rows independently. A last,
    partial chunk is padded (with copies of the last row) to a whole one and cut back: a
    matmul of one row takes another kernel, whose sums differ in the last bit."""
    b = x.shape[0]
    if b <= chunk:
        return fn(x)
    n = -(-b // chunk)
    pad = jnp.concatenate([x, jnp.repeat(x[-1:], n * chunk - b, axis=0)]) if n * chunk > b else x
    out = jax.lax.map(fn, pad.reshape((n, chunk) + x.shape[1:]))
    return jax.tree.map(lambda y: y.reshape((n * chunk,) + y.shape[2:])[:b], out)


def nature_trunk(trunk, obs):
    """(..., C, H, W) uint8 frames -> (..., 512) features; scaled to [0, 1] here, so the
    rollout buffers stay uint8."""
    lead = obs.shape[:-3]
    x = obs.reshape((-1,) + obs.shape[-3:]).astype(jnp.float32) / 255.0
    x = jnp.transpose(x, (0, 2, 3, 1))  # NCHW (frame stack first) -> NHWC
    for layer, (_, _, stride) in zip(trunk["conv"], NATURE_CONVS):
        x = jax.nn.relu(conv2d_valid(x, layer["w"], stride) + layer["b"])
    x = x.reshape((x.shape[0], -1))
    x = jax.nn.relu(x @ trunk["fc"]["w"] + trunk["fc"]["b"])
    return x.reshape(lead + (x.shape[-1],))


@dataclass(frozen=True)
class NatureCNNActorCritic:
    """Nature-DQN trunk shared by the policy and value heads (orthogonal init: gain sqrt 2 in
    the trunk, 0.01 for the policy head, 1 for the value head; ReLU). params["actor"] =
    {"trunk", "pi" (, "log_std")}, params["critic"] = {"v"}: the value head reads the actor's
    trunk, and the value loss trains the trunk too (one shared network, as in the PPO paper's
    Atari experiments)."""

    obs_shape: tuple[int, int, int]   # (C, H, W): stacked frames first
    dist: Distribution

    @property
    def feature_map(self) -> tuple[int, int]:
        h, w = self.obs_shape[1:]
        for _, k, s in NATURE_CONVS:
            h, w = (h - k) // s + 1, (w - k) // s + 1
        return h, w

    def init(self, key):
        keys = jax.random.split(key, len(NATURE_CONVS) + 3)
        gain = math.sqrt(2.0)
        conv, c_in = [], self.obs_shape[0]
        for k, (c_out, size, _) in zip(keys, NATURE_CONVS):
            w = orthogonal(gain)(k, (size, size, c_in, c_out), jnp.float32)
            conv.append({"w": w, "b": jnp.zeros((c_out,), jnp.float32)})
            c_in = c_out
        h, w = self.feature_map
        n = len(NATURE_CONVS)
        trunk = {"conv": conv, "fc": _dense_init(keys[n], h * w * c_in, NATURE_HIDDEN, gain)}
        n_out = self.dist.act_dim if isinstance(self.dist, DiagGaussian) else self.dist.n
        actor = {"trunk": trunk, "pi": _dense_init(keys[n + 1], NATURE_HIDDEN, n_out, 0.01)}
        if isinstance(self.dist, DiagGaussian):
            actor["log_std"] = jnp.zeros((self.dist.act_dim,), jnp.float32)
        return {"actor": actor, "critic": {"v": _dense_init(keys[n + 2], NATURE_HIDDEN, 1, 1.0)}}

    def _head(self, actor, features):
        out = features @ actor["pi"]["w"] + actor["pi"]["b"]
        if isinstance(self.dist, DiagGaussian):
            return jnp.concatenate([out, jnp.broadcast_to(actor["log_std"], out.shape)], -1)
        return out

    def dist_params(self, actor, obs, xp=jnp, layer=None):
        """`layer`: accepted for MLPActorCritic's signature and unused (the trunk's convolutions
        and the heads keep their own matmuls)."""
        return self._head(actor, nature_trunk(actor["trunk"], obs))

    def forward_only(self, fn, obs):
        """fn(obs) for a pass that is never differentiated (theta_old on the rollout, the
        diagnostics after the epochs, MCPO's write test), over any leading axes of frames, in
        chunks of FORWARD_CHUNK frames (`map_in_chunks`): the same numbers as one pass up to
        float rounding (bit for bit on an AVX-512 CPU when the frames fill whole chunks; not on
        AVX2, where XLA tiles the two batch sizes differently: tests/test_families.py),
        ~2x faster on 256 or 1,024 frames, whose im2col patches
        (1,024 x 20 x 20 x 256 floats: 420 MB) no cache holds (benchmarks/RESULTS.md §1.0).
        The losses keep the whole minibatch: under grad, chunks were no faster."""
        lead = obs.shape[:-3]
        out = map_in_chunks(fn, obs.reshape((-1,) + obs.shape[-3:]), FORWARD_CHUNK)
        return jax.tree.map(lambda y: y.reshape(lead + y.shape[1:]), out)

    def _value_head(self, critic, features):
        return (features @ critic["v"]["w"] + critic["v"]["b"])[..., 0]

    def value(self, params, obs, xp=jnp):
        return self._value_head(params["critic"], nature_trunk(params["actor"]["trunk"], obs))

    def dist_and_value(self, params, obs):
        """(dist_params, V) from one trunk pass: the policy and value losses' gradients then
        meet at the features and flow back through the trunk once (two separate passes cost
        ~30% more per PPO minibatch on Atari)."""
        features = nature_trunk(params["actor"]["trunk"], obs)
        return (self._head(params["actor"], features),
                self._value_head(params["critic"], features))

    # Host-side sampling: one jitted forward per env step on the batch of envs ------------------
    def host_params(self, actor):
        return jax.device_put(actor)

    def sample_noise(self, rng: np.random.Generator, prefix: tuple) -> np.ndarray:
        return _sample_noise(self.dist, rng, prefix)

    def perturbation_np(self, actor, noise: np.ndarray) -> np.ndarray:
        return _perturbation(self.dist, actor, noise)

    def sample_perturbed_np(self, actor, obs: np.ndarray, perturbation: np.ndarray):
        return np.asarray(_cnn_sample(self, actor, obs, perturbation))

    def sample_perturbed_async(self, actor, obs: np.ndarray, perturbation: np.ndarray):
        """`sample_perturbed_np` without waiting: a JAX array still being computed (JAX
        dispatches asynchronously), for the rollout to step other envs meanwhile
        (mcpo.rollout.HalfPipeline); `np.asarray` of it waits."""
        return _cnn_sample(self, actor, obs, perturbation)

    def sample_terms_async(self, params, obs: np.ndarray, perturbation: np.ndarray):
        """(action, distribution parameters, V) of theta_old = `params` (actor and critic) on
        `obs`, from one trunk pass and without waiting (as `sample_perturbed_async`): the
        rollout keeps the last two for the update's batch, which then needs no second pass of
        theta_old over the rollout's frames (SB3 does the same; mcpo.rollout.HalfPipeline)."""
        return _cnn_sample_terms(self, params, obs, perturbation)

    def sample_np(self, actor, obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self.sample_perturbed_np(actor, obs, self.perturbation_np(actor, noise))

    def mode_np(self, actor, obs: np.ndarray) -> np.ndarray:
        return np.asarray(_cnn_mode(self, actor, obs))


def _perturbed_action(policy: NatureCNNActorCritic, out, perturbation):
    """A sample from the distribution parameters `out` and a perturbation (`_perturbation`)."""
    if isinstance(policy.dist, DiagGaussian):
        return out[..., : policy.dist.act_dim] + perturbation
    return jnp.argmax(out + perturbation, axis=-1)


@partial(jax.jit, static_argnums=0)
def _cnn_sample(policy: NatureCNNActorCritic, actor, obs, perturbation):
    return _perturbed_action(policy, policy.dist_params(actor, obs), perturbation)


@partial(jax.jit, static_argnums=0)
def _cnn_sample_terms(policy: NatureCNNActorCritic, params, obs, perturbation):
    out, v = policy.dist_and_value(params, obs)
    return _perturbed_action(policy, out, perturbation), out, v


@partial(jax.jit, static_argnums=0)
def _cnn_mode(policy: NatureCNNActorCritic, actor, obs):
    out = policy.dist_params(actor, obs)
    if isinstance(policy.dist, DiagGaussian):
        return out[..., : policy.dist.act_dim]
    return jnp.argmax(out, axis=-1)


NETWORKS = ("mlp", "minigrid", "xminigrid", "nature-cnn")
XMINIGRID_SIZES = (13, 12)  # xminigrid.core.constants NUM_TILES, NUM_COLORS: a cell's indices


def make_policy(obs_space, action_space, hidden_sizes=(64, 64), kind: str = "mlp"):
    """The network for an env (`kind`: mcpo.envs.network_kind)."""
    if isinstance(action_space, gym.spaces.Box):
        dist = DiagGaussian(int(np.prod(action_space.shape)))
    elif isinstance(action_space, gym.spaces.Discrete):
        dist = Categorical(int(action_space.n))
    else:  # checked earlier with a user-facing message (envs.check_spaces)
        raise TypeError(f"unsupported action space {action_space}")
    if kind == "nature-cnn":
        return NatureCNNActorCritic(tuple(int(x) for x in obs_space.shape), dist)
    if kind == "minigrid":
        enc = MiniGridOneHot(cells=(int(np.prod(obs_space.shape)) - 1) // 3)
        return MLPActorCritic(enc.dim, dist, tuple(hidden_sizes), enc)
    if kind == "xminigrid":  # mcpo.jaxenv.xminigrid_env: (tile, colour) per cell, direction
        enc = MiniGridOneHot(cells=(int(np.prod(obs_space.shape)) - 1) // len(XMINIGRID_SIZES),
                             sizes=XMINIGRID_SIZES)
        return MLPActorCritic(enc.dim, dist, tuple(hidden_sizes), enc)
    return MLPActorCritic(int(np.prod(obs_space.shape)), dist, tuple(hidden_sizes))
