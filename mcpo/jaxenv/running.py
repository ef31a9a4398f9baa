"""Observation normalization and reward scaling inside the jitted loop.

The formulas of the Gymnasium path, in float32 JAX: `stats_update` is
`mcpo.envs.RunningMeanStd.update` (Chan et al.'s parallel mean/variance update), `normalize`
is `mcpo.envs.normalize_obs`, `scale_reward` is `mcpo.rollout.Collector._scale_reward`
(divide by the running std of the discounted return, as SB3's VecNormalize, then clip).
In a checkpoint the statistics are stored as `RunningMeanStd.state_dict()` stores them (float64
mean/var/count under host['obs_rms'] / host['ret_rms']), so `mcpo.load` reads either backend's
runs; float32 -> float64 -> float32 is exact.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EPSILON = 1e-4  # initial count, as RunningMeanStd


class RunningStats(NamedTuple):
    mean: jax.Array   # float32, the statistic's shape
    var: jax.Array
    count: jax.Array  # float32 ()


def stats_init(shape) -> RunningStats:
    return RunningStats(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32),
                        jnp.asarray(EPSILON, jnp.float32))


def stats_update(s: RunningStats, x) -> RunningStats:
    """Merge a batch x (leading axis) into the statistics."""
    n = x.shape[0]
    b_mean = jnp.mean(x, axis=0)
    b_m2 = jnp.sum(jnp.square(x - b_mean), axis=0)
    delta = b_mean - s.mean
    tot = s.count + n
    mean = s.mean + delta * (n / tot)
    var = (s.var * s.count + b_m2 + delta * delta * (s.count * n / tot)) / tot
    return RunningStats(mean, var, tot)


def normalize(obs, s: RunningStats | None, clip: float):
    if s is None:
        return obs
    y = (obs - s.mean) / jnp.sqrt(s.var + 1e-8)
    return jnp.clip(y, -clip, clip).astype(jnp.float32)


def scale_reward(reward, disc_return, s: RunningStats, gamma: float, clip: float):
    """(scaled reward, new discounted return, new statistics) for one step of E envs."""
    disc_return = disc_return * gamma + reward
    s = stats_update(s, disc_return)
    r = reward / jnp.sqrt(s.var + 1e-8)
    return jnp.clip(r, -clip, clip), disc_return, s


def to_state_dict(s: RunningStats) -> dict:
    """As `RunningMeanStd.state_dict()` (float64), for checkpoints and `mcpo.load`."""
    return {"mean": np.asarray(s.mean, np.float64), "var": np.asarray(s.var, np.float64),
            "count": np.asarray(s.count, np.float64)}


def from_state_dict(d: dict) -> RunningStats:
    return RunningStats(jnp.asarray(np.asarray(d["mean"], np.float32)),
                        jnp.asarray(np.asarray(d["var"], np.float32)),
                        jnp.asarray(np.asarray(d["count"], np.float32)))
