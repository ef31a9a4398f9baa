"""XLand-MiniGrid (Nikulin et al. 2024, pip `xminigrid`) behind the `JaxEnv` interface
(mcpo/jaxenv/base.py): the paper's MiniGrid tasks (Unlock, UnlockPickUp, ...) in pure JAX.

What xminigrid's `MiniGrid-*` environments are, next to Gymnasium's MiniGrid (read from
xminigrid 0.9.3's source): the same layouts, the same time limits (Unlock: two 6x6 rooms,
8 * 6^2 = 288 steps) and the same sparse reward, 1 - 0.9 * steps / limit on success, 0
otherwise. They differ in what the agent sees and does: the observation is the egocentric 7x7
view with two channels per cell, (tile, colour) indices (a door's state is part of its tile:
DOOR_LOCKED / DOOR_CLOSED / DOOR_OPEN), where MiniGrid has three (object, colour, state); the
agent's direction is not part of it (we append it, as our Gymnasium MiniGrid packing does);
there are 6 actions (forward, turn right, turn left, pick up, put down, toggle) where MiniGrid
has 7 (its `done` is a no-op in these tasks). So a policy trained here does not run on the
Gymnasium ids: the ids are xminigrid's own (`MiniGrid-Unlock`, `MiniGrid-UnlockPickUp`), with
no Gymnasium twin, and evaluation runs in JAX.

Observation: one float32 vector, the 49 cells' (tile, colour) row-major, then the direction
(0-3); `network_kind = "xminigrid"` makes `mcpo.networks.make_policy` one-hot encode it (13
tiles + 12 colours per cell + 4 directions = 1229 inputs), as the Gymnasium MiniGrid grids are
(docs/design.md §3): indices are categories, never magnitudes.

Episode ends: xminigrid's `step` reports a goal reached (`discount == 0`) and the time limit
(`step_num == max_steps`) together as `LAST`; the adapter separates them (terminated = the goal,
truncated = the limit and not the goal) and resets on the same step, as `base` requires.
Success (the loop's minigrid columns) is a termination with a positive reward, as on the
Gymnasium backend.
"""

from __future__ import annotations

import gymnasium as gym
import jax.numpy as jnp
import numpy as np

from mcpo.jaxenv.base import JaxEnv, JaxStep, same_step_reset, strong
from mcpo.networks import XMINIGRID_SIZES

DIRECTIONS = 4


class XMiniGridEnv(JaxEnv):
    network_kind = "xminigrid"

    def __init__(self, env_id: str):
        import xminigrid  # optional dependency: the `xminigrid` extra

        self.env_id = env_id
        self._env, self._params = xminigrid.make(env_id)
        self.max_episode_steps = int(self._params.max_steps)
        h, w, c = self._env.observation_shape(self._params)
        n = int(h) * int(w) * int(c) + 1
        high = np.full((n,), max(XMINIGRID_SIZES) - 1, np.float32)
        high[-1] = DIRECTIONS - 1
        self.observation_space = gym.spaces.Box(np.zeros((n,), np.float32), high,
                                                dtype=np.float32)
        self.action_space = gym.spaces.Discrete(int(self._env.num_actions(self._params)))

    def _obs(self, timestep):
        grid = timestep.observation.reshape(-1).astype(jnp.float32)
        direction = jnp.asarray(timestep.state.agent.direction, jnp.float32).reshape(1)
        return jnp.concatenate([grid, direction])

    def reset(self, key):
        ts = strong(self._env.reset(self._params, key))
        return self._obs(ts), ts

    def step(self, key, state, action) -> JaxStep:
        ts = strong(self._env.step(self._params, state, action.astype(jnp.int32)))
        terminated = jnp.asarray(ts.discount == 0.0).reshape(())
        truncated = jnp.logical_and(ts.state.step_num >= self.max_episode_steps, ~terminated)
        done = jnp.logical_or(terminated, truncated)
        obs = self._obs(ts)
        next_obs, new_state = same_step_reset(done, (obs, ts), self.reset(key))
        return JaxStep(obs=next_obs, state=new_state,
                       reward=jnp.asarray(ts.reward, jnp.float32).reshape(()),
                       terminated=terminated, truncated=truncated, final_obs=obs)
