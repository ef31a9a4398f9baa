"""The interface a pure-JAX environment library implements to train with `--backend <lib>`.

The training loop (`mcpo.jaxenv.loop`) never sees a library's own API: it sees one
environment instance through `JaxEnv`, vmaps it over the `num_envs` envs of a run and over the
seeds of a group, and jits the whole iteration. gymnax (`mcpo.jaxenv.gymnax_env`) is the first
implementation, xminigrid (`mcpo.jaxenv.xminigrid_env`) the second; a library plugs in by
providing the same things:

* `env_id`, the id users give (`--env-id`); the library's ids and their Gymnasium twins are
  listed in `mcpo.jaxenv.registry` (so ids are checked, and clear errors given, without
  importing the library).
* `observation_space`, `action_space` as **Gymnasium spaces** of a single env (the networks,
  `mcpo.load` and `Agent.act` are built from them): a flat `Box` observation (float32, the
  library's observation reshaped to a vector: the MLP networks take vectors) and a `Box` or
  `Discrete` action.
* `network_kind`: which `mcpo.networks.make_policy` network reads these observations ("mlp",
  the default; "xminigrid": one-hot (tile, colour) cells + direction).
* `max_episode_steps`: the time limit (truncation) of an episode; the evaluation loop runs
  episodes as a scan of this length.
* `reset(key) -> (obs, state)` and `step(key, state, action) -> JaxStep`, pure functions of
  JAX arrays (no Python side effects, no host callbacks; `state` any pytree), for ONE env.
  `step` auto-resets on the **same step** (docs/design.md §3, as our Gymnasium vector envs):
  when the episode ends, `JaxStep.obs`/`state` are the first observation/state of the next
  episode and `JaxStep.final_obs` is the last observation of the one that ended. It reports
  **termination and truncation apart**: `terminated` (the MDP ended; no bootstrap) and
  `truncated` (the time limit cut it; GAE bootstraps from V(final_obs)), never both: an
  episode that terminates on its last allowed step is terminated. The reward is the raw
  float32 reward (scaling is the loop's). Actions arrive clipped to a Box's bounds, or as
  int32 for Discrete.

A library whose own step resets on the next step, or merges the two kinds of episode end,
must be adapted to these semantics in its adapter (gymnax's is: `GymnaxEnv.step`).
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


def strong(tree):
    """The same pytree with every leaf a strongly typed array (libraries reset with Python
    scalars, whose weak types would change the scan carry's type after the first step)."""
    return jax.tree.map(lambda x: jnp.asarray(x).astype(jnp.asarray(x).dtype), tree)


def is_success(terminated, reward):
    """An episode's success (MiniGrid: the goal reached), as `mcpo.rollout.Episode` defines it
    on the Gymnasium backend: it ended by termination with a positive last reward."""
    return jnp.logical_and(terminated, reward > 0)


def same_step_reset(done, ended, reset):
    """The (obs, state) to continue from after one step: `reset`'s (the next episode's first)
    where the episode ended (`done`), else the step's own `ended` (obs, state)."""
    pick = lambda a, b: jnp.where(done, a, b)  # noqa: E731
    return pick(reset[0], ended[0]), jax.tree.map(pick, reset[1], ended[1])


class JaxStep(NamedTuple):
    """One step of one env (same-step autoreset)."""

    obs: jax.Array         # (D,) float32: next obs (the new episode's first if the step ended one)
    state: Any             # the env state after the step (reset if it ended)
    reward: jax.Array      # () float32, raw
    terminated: jax.Array  # () bool: the MDP ended (no bootstrap)
    truncated: jax.Array   # () bool: the time limit ended it (bootstrap from final_obs)
    final_obs: jax.Array   # (D,) float32: the step's own next obs (the last obs when it ended)


class JaxEnv(abc.ABC):
    """One environment of a pure-JAX library (see the module docstring for the contract)."""

    env_id: str
    observation_space: Any  # gymnasium.spaces.Box (flat, float32)
    action_space: Any       # gymnasium.spaces.Box or gymnasium.spaces.Discrete
    max_episode_steps: int
    network_kind: str = "mlp"  # mcpo.networks.make_policy's kind for these observations

    @property
    def obs_dim(self) -> int:
        return int(self.observation_space.shape[0])

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
        """(first observation (D,) float32, env state) of a new episode."""

    @abc.abstractmethod
    def step(self, key: jax.Array, state: Any, action: jax.Array) -> JaxStep:
        """One transition with same-step autoreset and termination/truncation apart."""
