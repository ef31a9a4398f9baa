"""Action distributions with closed-form log-prob, entropy and KL (docs/design.md §3).

A distribution's parameters per state are one flat array, so that a rollout can store the
sampling distribution and any KL[pi_old || pi] is computed in closed form per state:

* `DiagGaussian`: ``[mean (d), log_std (d)]`` (log-std is state-independent in the network but
  stored per state, which keeps every policy -- theta, theta_old, psi -- the same shape).
* `Categorical`: ``logits (n)``.

All methods are pure jnp functions over a leading batch shape. Sampling is split in two,
`sample(key, p) = sample_from_bits(p, bits(key, batch_shape))`, so that a rollout can draw
every step's random bits before its scan in one batched call (mcpo.jaxenv.loop) and get the
same actions: the bits are integers, the same however XLA fuses their hashing; the float
transform stays in the step, at the step's small shape, as when JAX's sampler ran there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)
SQRT_2 = np.float32(np.sqrt(2.0))
NORMAL_LO = np.nextafter(np.float32(-1.0), np.float32(0.0))  # jax.random.normal's open interval
TINY = np.float32(np.finfo(np.float32).tiny)


def uniform_from_bits(bits, lo, hi):
    """jax.random.uniform's float32 map of 32 random bits to [lo, hi) (jax 0.10.2, pinned:
    23 bits into the mantissa of a float in [1, 2), minus 1, scaled). Tested equal to
    jax.random.normal and jax.random.categorical through the samplers below."""
    f = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000),
                                     jnp.float32) - np.float32(1.0)
    return jnp.maximum(lo, f * (np.float32(hi) - np.float32(lo)) + lo)


def random_bits(key, shape):
    return jax.random.bits(key, shape, jnp.uint32)


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

    def bits(self, key, batch_shape):
        return random_bits(key, (*batch_shape, self.act_dim))

    def sample_from_bits(self, p, bits):
        """mean + std * a standard normal draw, the draw as jax.random.normal makes it."""
        mean, log_std = self.split(p)
        normal = SQRT_2 * jax.lax.erf_inv(uniform_from_bits(bits, NORMAL_LO, 1.0))
        return mean + jnp.exp(log_std) * normal

    def sample(self, key, p):
        return self.sample_from_bits(p, self.bits(key, p.shape[:-1]))

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

    def bits(self, key, batch_shape):
        return random_bits(key, (*batch_shape, self.n))

    def sample_from_bits(self, p, bits):
        """The Gumbel-max trick, as jax.random.categorical samples (its default "low" mode)."""
        gumbel = -jnp.log(-jnp.log(uniform_from_bits(bits, TINY, 1.0)))
        return jnp.argmax(p + gumbel, axis=-1)

    def sample(self, key, p):
        return self.sample_from_bits(p, self.bits(key, p.shape[:-1]))

    def mode(self, p):
        return jnp.argmax(p, axis=-1)


Distribution = DiagGaussian | Categorical
