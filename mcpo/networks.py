"""Actor and critic networks as plain parameter pytrees and pure apply functions.

Parameters are nested dicts/lists of arrays, so MCPO can mix policies leaf by leaf
(psi = sum_i w_i theta_i, `jax.tree.map`). The MLP apply is written against an array module
`xp`, so the same function runs jitted in JAX for the update and in NumPy on a host copy of the
parameters during the rollout (a jitted call costs ~40-150 us of dispatch on CPU per step, the
NumPy forward of a 64x64 MLP ~15 us; see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from mcpo.distributions import Categorical, DiagGaussian, Distribution


def init_mlp(key, sizes: tuple[int, ...], out_gain: float, hidden_gain: float = math.sqrt(2.0)):
    """Orthogonal init (gain sqrt 2 for hidden layers, `out_gain` for the last), zero biases."""
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        gain = out_gain if i == len(sizes) - 2 else hidden_gain
        w = jax.nn.initializers.orthogonal(gain)(k, (n_in, n_out), jnp.float32)
        layers.append({"w": w, "b": jnp.zeros((n_out,), jnp.float32)})
    return layers


def mlp(layers, x, xp=jnp):
    """tanh MLP; linear last layer. `xp` is jax.numpy or numpy."""
    for i, layer in enumerate(layers):
        x = x @ layer["w"] + layer["b"]
        if i < len(layers) - 1:
            x = xp.tanh(x)
    return x


@dataclass(frozen=True)
class MLPActorCritic:
    """Separate actor and critic MLPs for vector observations (docs/design.md §3)."""

    obs_dim: int
    dist: Distribution
    hidden_sizes: tuple[int, ...] = (64, 64)

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

    def dist_params(self, actor, obs, xp=jnp):
        """Per-state distribution parameters (see mcpo.distributions)."""
        out = mlp(actor["mlp"], obs, xp)
        if isinstance(self.dist, DiagGaussian):
            log_std = xp.broadcast_to(actor["log_std"], out.shape)
            return xp.concatenate([out, log_std], axis=-1)
        return out

    def value(self, critic, obs, xp=jnp):
        return mlp(critic["mlp"], obs, xp)[..., 0]

    # Host-side sampling for the rollout (NumPy, no JAX dispatch) ----------------------------
    def sample_noise(self, rng: np.random.Generator, prefix: tuple) -> np.ndarray:
        """All the randomness a rollout's action sampling needs, drawn in one call."""
        if isinstance(self.dist, DiagGaussian):
            return rng.standard_normal(prefix + (self.dist.act_dim,), dtype=np.float32)
        return rng.random(prefix + (self.dist.n,), dtype=np.float32)

    def perturbation_np(self, actor_np, noise: np.ndarray) -> np.ndarray:
        """`sample_noise` output -> what is added to the actor's output to sample: std * eps
        (Gaussian reparameterization) or Gumbel noise -log(-log u) (Gumbel-max). Done for a
        whole rollout in one call; elementwise, so the actions equal per-step sampling."""
        if isinstance(self.dist, DiagGaussian):
            return np.exp(actor_np["log_std"]) * noise
        return -np.log(-np.log(noise + 1e-20) + 1e-20)

    def sample_perturbed_np(self, actor_np, obs: np.ndarray, perturbation: np.ndarray):
        """Actions for a batch of observations given `perturbation_np` output."""
        out = mlp(actor_np["mlp"], obs, np)
        if isinstance(self.dist, DiagGaussian):
            return out + perturbation
        return np.argmax(out + perturbation, axis=-1)

    def sample_np(self, actor_np, obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Sample actions for a batch of observations given `sample_noise` output."""
        return self.sample_perturbed_np(actor_np, obs, self.perturbation_np(actor_np, noise))

    def mode_np(self, actor_np, obs: np.ndarray) -> np.ndarray:
        out = mlp(actor_np["mlp"], obs, np)
        if isinstance(self.dist, Categorical):
            return np.argmax(out, axis=-1)
        return out


def make_policy(obs_space, action_space, hidden_sizes=(64, 64)) -> MLPActorCritic:
    if isinstance(action_space, gym.spaces.Box):
        dist = DiagGaussian(int(np.prod(action_space.shape)))
    elif isinstance(action_space, gym.spaces.Discrete):
        dist = Categorical(int(action_space.n))
    else:  # checked earlier with a user-facing message (envs.check_spaces)
        raise TypeError(f"unsupported action space {action_space}")
    return MLPActorCritic(int(np.prod(obs_space.shape)), dist, tuple(hidden_sizes))
