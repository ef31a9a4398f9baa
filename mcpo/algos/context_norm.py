"""Normalization of MCPO's context vector v (our fix, not the paper's; docs/design.md §4).

The raw features differ by up to nine orders of magnitude (KL distances ~1e-5, entropies ~1,
R(theta_old) ~1e-9), so an MLP fed them raw learns a fixed bias per output and ignores v. Each
feature is z-scored with statistics kept in the learner state (saved in the checkpoint), updated
once per minibatch inside the jitted update, then clipped:

    r = 1 / n                       'running': every minibatch so far counts equally (Welford)
    r = max(1 / n, 1 - decay)       'ema': the same until n = 1 / (1 - decay), then an
                                    exponential window of ~1 / (1 - decay) minibatches
    mean <- mean + r (v - mean);  var <- (1 - r) (var + r (v - mean_before)^2)

With r = 1/n this is exactly Welford's population variance; with a fixed r it is the usual
exponentially weighted mean and variance, and starting at 1/n removes the start-up bias.
The variance is floored (features that never vary, like R(theta_old) = E[A] under per-minibatch
advantage normalization, come out as 0 rather than as amplified rounding noise).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

MODES = ("none", "running", "ema")
CLIP = 5.0        # |z| <= 5, as observation normalization clips
VAR_FLOOR = 1e-12  # the smallest varying features (KL distances) have variances ~1e-10


class ContextStats(NamedTuple):
    count: jax.Array  # float32 (), minibatches seen
    mean: jax.Array   # (F,)
    var: jax.Array    # (F,)


def init(dim: int) -> ContextStats:
    return ContextStats(jnp.zeros((), jnp.float32), jnp.zeros((dim,), jnp.float32),
                        jnp.zeros((dim,), jnp.float32))


def update(stats: ContextStats, v, mode: str, decay: float) -> ContextStats:
    """Merge one context vector into the statistics (mode 'running' or 'ema')."""
    count = stats.count + 1.0
    rate = 1.0 / count
    if mode == "ema":
        rate = jnp.maximum(rate, 1.0 - decay)
    delta = v - stats.mean
    mean = stats.mean + rate * delta
    var = (1.0 - rate) * (stats.var + rate * jnp.square(delta))
    return ContextStats(count, mean, var)


def apply(stats: ContextStats, v):
    """z-score of v under the statistics, clipped to [-CLIP, CLIP]."""
    z = (v - stats.mean) / jnp.sqrt(jnp.maximum(stats.var, VAR_FLOOR))
    return jnp.clip(z, -CLIP, CLIP)
