"""gymnax (Lange 2022, pip `gymnax`) behind the `JaxEnv` interface (mcpo/jaxenv/base.py).

gymnax's own `step` resets on done and returns the *reset* observation, so the last observation
of an episode (needed to bootstrap a truncated one) is lost, and its `done` merges the time
limit with the MDP's own end. The adapter therefore calls the environment's `step_env` with the
time limit switched off (`max_steps_in_episode` = int32 max; in gymnax that field is used only
for the time-limit test, checked for every env we list) and applies the limit itself, as
Gymnasium's TimeLimit wrapper does: `terminated` is the env's own end, `truncated` =
(step count >= limit) and not terminated, then the same-step reset.

Observations are flattened to float32 vectors (MinAtar's 10x10xC grids become 100*C inputs of
the MLP networks).
"""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from mcpo.jaxenv.base import JaxEnv, JaxStep, same_step_reset, strong

_NO_LIMIT = int(np.iinfo(np.int32).max)


def _gym_space(space, flat: bool):
    """A gymnax space as the Gymnasium space our networks and Agent are built from."""
    if hasattr(space, "n"):
        return gym.spaces.Discrete(int(space.n))
    shape = tuple(space.shape)
    low = np.broadcast_to(np.asarray(space.low, np.float32), shape)
    high = np.broadcast_to(np.asarray(space.high, np.float32), shape)
    if flat:
        low, high = low.reshape(-1), high.reshape(-1)
    return gym.spaces.Box(low, high, dtype=np.float32)


class GymnaxEnv(JaxEnv):
    def __init__(self, env_id: str):
        import gymnax  # optional dependency: the `gymnax` extra

        self.env_id = env_id
        self._env, self._params = gymnax.make(env_id)
        self._free = self._params.replace(max_steps_in_episode=_NO_LIMIT)
        self.max_episode_steps = int(self._params.max_steps_in_episode)
        self.observation_space = _gym_space(self._env.observation_space(self._params), True)
        self.action_space = _gym_space(self._env.action_space(self._params), False)
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)

    def _action(self, action):
        return action.astype(jnp.int32) if self._discrete else action

    def reset(self, key):
        obs, state = self._env.reset_env(key, self._params)
        return obs.reshape(-1).astype(jnp.float32), strong(state)

    def step(self, key, state, action) -> JaxStep:
        k_step, k_reset = jax.random.split(key)
        obs, nxt, reward, end, _ = self._env.step_env(k_step, state, self._action(action),
                                                      self._free)
        nxt = strong(nxt)
        terminated = jnp.asarray(end, bool).reshape(())
        truncated = jnp.logical_and(nxt.time >= self.max_episode_steps, ~terminated)
        done = jnp.logical_or(terminated, truncated)
        obs = obs.reshape(-1).astype(jnp.float32)
        next_obs, new_state = same_step_reset(done, (obs, nxt), self.reset(k_reset))
        return JaxStep(obs=next_obs, state=new_state,
                       reward=jnp.asarray(reward, jnp.float32).reshape(()),
                       terminated=terminated, truncated=truncated, final_obs=obs)
