"""Action distributions with closed-form log-prob, entropy and KL (docs/design.md §3).

A distribution's parameters per state are one flat array, so that a rollout can store the
sampling distribution and any KL[pi_old || pi] is computed in closed form per state:

* `DiagGaussian`: ``[mean (d), log_std (d)]`` (log-std is state-independent in the network but
  stored per state, which keeps every policy -- theta, theta_old, psi -- the same shape).
* `Categorical`: ``logits (n)``.

All methods are pure jnp functions over a leading batch shape. Sampling is split in two,
`sample(key, p) = sample_from(p, noise(key, batch_shape))`, so that a rollout can draw every
step's noise before its scan in one batched call (mcpo.jaxenv.loop) and get the same actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class DiagGaussian:
    act_dim: int
    kind: str = "gaussian"

    @property
    def param_dim(self) -> int:
        return 2 * self.act_dim

    def split(self, p):
        return p[..., : self.act_dim], p[..., self.act_dim:]

    def log_prob(self, p, a):
        mean, log_std = self.split(p)
        z = (a - mean) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * z * z - log_std - 0.5 * LOG_2PI, axis=-1)

    def entropy(self, p):
        _, log_std = self.split(p)
        return jnp.sum(log_std + 0.5 * (1.0 + LOG_2PI), axis=-1)

    def kl(self, p, q):
        """KL[p || q] per state."""
        mp, lsp = self.split(p)
        mq, lsq = self.split(q)
        var_ratio = jnp.exp(2.0 * (lsp - lsq))
        t = jnp.square((mp - mq) * jnp.exp(-lsq))
        return jnp.sum(lsq - lsp + 0.5 * (var_ratio + t) - 0.5, axis=-1)

    def noise(self, key, batch_shape):
        """Standard normal draws, (*batch_shape, act_dim)."""
        return jax.random.normal(key, (*batch_shape, self.act_dim), jnp.float32)

    def sample_from(self, p, noise):
        mean, log_std = self.split(p)
        return mean + jnp.exp(log_std) * noise

    def sample(self, key, p):
        return self.sample_from(p, self.noise(key, p.shape[:-1]))

    def mode(self, p):
        return self.split(p)[0]


@dataclass(frozen=True)
class Categorical:
    n: int
    kind: str = "categorical"

    @property
    def param_dim(self) -> int:
        return self.n

    def log_prob(self, p, a):
        logp = jax.nn.log_softmax(p, axis=-1)
        a = a.astype(jnp.int32)
        logp = jnp.broadcast_to(logp, jnp.broadcast_shapes(logp.shape[:-1], a.shape)
                                + logp.shape[-1:])
        return jnp.take_along_axis(logp, a[..., None], axis=-1)[..., 0]

    def entropy(self, p):
        logp = jax.nn.log_softmax(p, axis=-1)
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)

    def kl(self, p, q):
        """KL[p || q] per state."""
        lp = jax.nn.log_softmax(p, axis=-1)
        lq = jax.nn.log_softmax(q, axis=-1)
        return jnp.sum(jnp.exp(lp) * (lp - lq), axis=-1)

    def noise(self, key, batch_shape):
        """Gumbel draws, (*batch_shape, n): the Gumbel-max trick, as jax.random.categorical
        samples (tests/test_distributions.py checks that the two agree)."""
        return jax.random.gumbel(key, (*batch_shape, self.n), jnp.float32)

    def sample_from(self, p, noise):
        return jnp.argmax(p + noise, axis=-1)

    def sample(self, key, p):
        return self.sample_from(p, self.noise(key, p.shape[:-1]))

    def mode(self, p):
        return jnp.argmax(p, axis=-1)


Distribution = DiagGaussian | Categorical
