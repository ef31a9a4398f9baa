"""Evaluation episodes on a pure-JAX env: all episodes at once, each a scan of the env's time
limit (every episode ends within it), observations normalized with frozen statistics.

Used for the final evaluation of a `--backend gymnax` run (vmapped over the seeds of a group)
and by `mcpo eval` / `mcpo.agent.evaluate` on such runs.
"""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp

from mcpo.jaxenv.base import JaxEnv, is_success
from mcpo.jaxenv.running import RunningStats, normalize


def make_evaluate(env: JaxEnv, policy, clip_obs: float, episodes: int, deterministic: bool):
    """-> run(actor, obs_rms | None, key) -> ((episodes,) raw returns, (episodes,) successes:
    the episode terminated with a positive reward), for one policy (pure; vmap it over
    seeds)."""
    box = isinstance(env.action_space, gym.spaces.Box)
    if box:
        low = jnp.asarray(env.action_space.low, jnp.float32)
        high = jnp.asarray(env.action_space.high, jnp.float32)

    def episode(actor, obs_rms: RunningStats | None, key):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset)

        def body(c, k):
            state, obs, total, alive, succeeded = c
            k_act, k_env = jax.random.split(k)
            dist = policy.dist_params(actor, normalize(obs, obs_rms, clip_obs))
            action = (policy.dist.mode(dist) if deterministic
                      else policy.dist.sample(k_act, dist))
            if box:
                action = jnp.clip(action, low, high)
            out = env.step(k_env, state, action)
            total = total + jnp.where(alive, out.reward, 0.0)
            succeeded = succeeded | (alive & is_success(out.terminated, out.reward))
            alive = jnp.logical_and(alive, ~jnp.logical_or(out.terminated, out.truncated))
            return (out.state, out.obs, total, alive, succeeded), None

        init = (state, obs, jnp.zeros((), jnp.float32), jnp.asarray(True), jnp.asarray(False))
        (_, _, total, _, succeeded), _ = jax.lax.scan(
            body, init, jax.random.split(k_run, env.max_episode_steps))
        return total, succeeded

    def run(actor, obs_rms, key):
        keys = jax.random.split(key, episodes)
        return jax.vmap(episode, in_axes=(None, None, 0))(actor, obs_rms, keys)

    return run


def evaluate_episodes(env: JaxEnv, policy, actor, obs_rms: RunningStats | None,
                      clip_obs: float, episodes: int, seed: int,
                      deterministic: bool = True) -> list[tuple[float, bool]]:
    """(raw return, success) of `episodes` episodes of one policy (host arrays in, Python
    values out)."""
    run = jax.jit(make_evaluate(env, policy, clip_obs, episodes, deterministic))
    actor = jax.tree.map(jnp.asarray, actor)
    rets, succ = run(actor, obs_rms, jax.random.PRNGKey(seed))
    return [(float(r), bool(s)) for r, s in zip(rets, succ)]
