"""One training iteration on a pure-JAX env as one pure function, vmapped over seeds and jitted.

    iteration(LoopState) -> (LoopState, metrics)

does what the Gymnasium path does with a host loop, in the same order and with the same
formulas (docs/design.md §3):

1. Rollout: T steps of E envs (`lax.scan`; envs vmapped), actions sampled from theta_old
   (`Distribution.sample`), Box actions clipped only when sent to the env, same-step autoreset,
   observation statistics updated with each step's next observations (`running.stats_update`),
   rewards scaled by the running std of the discounted return (`running.scale_reward`), the
   final observation of an ended episode normalized and kept for the truncation bootstrap.
2. `mcpo.rollout.prepare_batch` (the Gymnasium path's function): theta_old and the critic on
   all states, GAE with gamma * V(final obs) on truncation and no bootstrap on termination.
3. The algorithm's own update, `spec.make_update(cfg, policy)`, called as is: the methods are
   not written twice.
4. Logging reductions: episodes finished this iteration, their mean/min/max return and mean
   length, the mean of the last `recent` episodes (a ring buffer), finiteness of observations,
   rewards and every learner-state leaf; with `success=True` (MiniGrid tasks) also the success
   rate of this iteration's episodes and of the last `recent` (success: the episode terminated
   with a positive reward, as `mcpo.rollout.Episode` defines it on the Gymnasium backend).

Randomness per seed: the learner state is `spec.init(cfg, policy, PRNGKey(seed))`, as in the
Gymnasium path (so both backends start from the same networks); the envs and the rollout use
keys folded from the same seed. Everything the iteration needs is in `LoopState`, env states
included, so a checkpoint of it resumes exactly: no episode is lost on resume.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from mcpo.algos.common import TrainState, finite_leaves
from mcpo.jaxenv.base import JaxEnv, is_success
from mcpo.jaxenv.running import (RunningStats, normalize, scale_reward, stats_init,
                                 stats_update)
from mcpo.rollout import Rollout, prepare_batch

ENV_STREAM, ROLLOUT_STREAM = 0x5EED, 0x7011  # fold_in constants: env resets, rollout sampling


class EnvCarry(NamedTuple):
    state: Any              # env states, leading axis E
    obs: jax.Array          # (E, D) raw observations
    ep_return: jax.Array    # (E,) raw return of the episode in flight
    ep_length: jax.Array    # (E,) int32
    disc_return: jax.Array  # (E,) discounted return for reward scaling
    key: jax.Array


class EpisodeLog(NamedTuple):
    recent: jax.Array  # (recent,) ring buffer of finished episodes' returns
    count: jax.Array   # int32: episodes finished so far (the next goes to slot count % recent)
    success: jax.Array | None = None  # (recent,) bool, their successes (success=True only)


class LoopState(NamedTuple):
    train: TrainState
    env: EnvCarry
    obs_rms: RunningStats | None
    ret_rms: RunningStats | None
    log: EpisodeLog


def recent_in_order(log: EpisodeLog, field: str = "recent") -> list:
    """The ring buffer's returns (or `field` "success": successes), oldest first (host side;
    for checkpoint metadata and the run's result)."""
    r = [x.item() for x in np.asarray(getattr(log, field))]
    n, cap = int(log.count), len(r)
    return r[:n] if n <= cap else r[n % cap:] + r[:n % cap]


class Loop:
    """The pure functions of one run configuration: `init(key)`, `iteration(state)` for ONE
    seed; `mcpo.jaxenv.runner` vmaps and jits them over a group of seeds."""

    def __init__(self, cfg, spec, policy, env: JaxEnv, recent: int, success: bool = False,
                 batched: bool = True):
        """`batched`: the functions will be vmapped over seeds (the update may then compute
        differently, not something else: `spec.make_update(..., batched=True)`)."""
        self.cfg, self.spec, self.policy, self.env, self.recent = cfg, spec, policy, env, recent
        self.success, self.batched = success, batched
        self.update = (spec.make_update(cfg, policy, batched=True)
                       if spec.batched_update and batched else spec.make_update(cfg, policy))
        space = env.action_space
        self.box = isinstance(space, gym.spaces.Box)
        if self.box:
            self.low = jnp.asarray(space.low, jnp.float32)
            self.high = jnp.asarray(space.high, jnp.float32)

    # Initial state -------------------------------------------------------------------------
    def init(self, key) -> LoopState:
        """The state before iteration 1 for the seed whose PRNGKey is `key`."""
        cfg, E = self.cfg, self.cfg.num_envs
        train = self.spec.init(cfg, self.policy, key)
        env_keys = jax.random.split(jax.random.fold_in(key, ENV_STREAM), E)
        obs, env_state = jax.vmap(self.env.reset)(env_keys)
        obs_rms = ret_rms = None
        if cfg.norm_obs:
            obs_rms = stats_update(stats_init((self.env.obs_dim,)), obs)
        if cfg.norm_reward:
            ret_rms = stats_init(())
        zeros = jnp.zeros((E,), jnp.float32)
        carry = EnvCarry(env_state, obs, zeros, jnp.zeros((E,), jnp.int32), zeros,
                         jax.random.fold_in(key, ROLLOUT_STREAM))
        log = EpisodeLog(jnp.zeros((self.recent,), jnp.float32), jnp.zeros((), jnp.int32),
                         jnp.zeros((self.recent,), bool) if self.success else None)
        return LoopState(train, carry, obs_rms, ret_rms, log)

    # Rollout -------------------------------------------------------------------------------
    def rollout(self, ls: LoopState):
        """T steps with theta_old -> (Rollout, episode records (T, E), new env carry, stats)."""
        cfg, policy, E = self.cfg, self.policy, self.cfg.num_envs
        actor = ls.train.params["actor"]
        key, k_roll = jax.random.split(ls.env.key)
        # Every step's random bits for the actions, and its env keys, drawn before the scan in
        # one batched call each: the same numbers as drawing them step by step (step t's key
        # split into an action key and an env key), and the hashing leaves the per-step loop
        # (rollout 0.89-0.94x on Pendulum and CartPole; benchmarks/RESULTS.md §7.1). The bits' float transform
        # stays in the step (Distribution.sample_from_bits).
        k_act, k_env = jnp.moveaxis(
            jax.vmap(jax.random.split)(jax.random.split(k_roll, cfg.num_steps)), 1, 0)
        bits = jax.vmap(lambda k: policy.dist.bits(k, (E,)))(k_act)
        env_keys = jax.vmap(lambda k: jax.random.split(k, E))(k_env)

        def step(c, x):
            env, obs_rms, ret_rms = c
            bits_t, env_keys_t = x
            obs_n = normalize(env.obs, obs_rms, cfg.clip_obs)
            action = policy.dist.sample_from_bits(policy.dist_params(actor, obs_n), bits_t)
            env_action = jnp.clip(action, self.low, self.high) if self.box else action
            out = jax.vmap(self.env.step)(env_keys_t, env.state, env_action)
            ep_return = env.ep_return + out.reward
            ep_length = env.ep_length + 1
            done = jnp.logical_or(out.terminated, out.truncated)
            reward, disc = out.reward, env.disc_return
            if ret_rms is not None:
                reward, disc, ret_rms = scale_reward(reward, disc, ret_rms, cfg.gamma,
                                                     cfg.clip_reward)
            if obs_rms is not None:
                obs_rms = stats_update(obs_rms, out.obs)
            final = jnp.where(done[:, None], normalize(out.final_obs, obs_rms, cfg.clip_obs),
                              0.0)
            ended_well = is_success(out.terminated, out.reward)
            record = (obs_n, action, reward, out.terminated, out.truncated, final, done,
                      ep_return, ep_length, ended_well)
            zero = lambda x: jnp.where(done, jnp.zeros_like(x), x)  # noqa: E731
            nxt = EnvCarry(out.state, out.obs, zero(ep_return), zero(ep_length), zero(disc),
                           env.key)
            return (nxt, obs_rms, ret_rms), record

        (env, obs_rms, ret_rms), rec = jax.lax.scan(
            step, (ls.env, ls.obs_rms, ls.ret_rms), (bits, env_keys))
        obs, actions, rewards, term, trunc, final, done, ep_ret, ep_len, success = rec
        ro = Rollout(obs=obs, actions=actions, rewards=rewards, terminated=term,
                     truncated=trunc, final_obs=final,
                     last_obs=normalize(env.obs, obs_rms, cfg.clip_obs))
        return ro, (done, ep_ret, ep_len, success), env._replace(key=key), obs_rms, ret_rms

    # Logging reductions --------------------------------------------------------------------
    def episode_metrics(self, log: EpisodeLog, done, ep_ret, ep_len, success):
        """This iteration's finished episodes (in (t, env) order, as the Gymnasium path lists
        them) -> metrics, and the ring buffer of the last `recent` returns updated."""
        R = self.recent
        done, ep_ret, ep_len = done.reshape(-1), ep_ret.reshape(-1), ep_len.reshape(-1)
        success = success.reshape(-1)
        n = jnp.sum(done.astype(jnp.int32))
        nan = jnp.float32(jnp.nan)
        some = n > 0
        mean = lambda x: jnp.where(some, jnp.sum(jnp.where(done, x, 0.0)) / jnp.maximum(n, 1),
                                   nan)  # noqa: E731
        rank = jnp.cumsum(done.astype(jnp.int32)) - 1
        keep = jnp.logical_and(done, rank >= n - R)  # only the last R can stay in the buffer
        slot = jnp.where(keep, (log.count + rank) % R, R)  # R: out of range, dropped
        recent = log.recent.at[slot].set(ep_ret, mode="drop")
        count = log.count + n
        filled = jnp.minimum(count, R)
        valid = jnp.arange(R) < filled
        succ = None
        metrics = {
            "episodes": n, "episodes_total": count,
            "ep_return_mean": mean(ep_ret),
            "ep_return_min": jnp.where(some, jnp.min(jnp.where(done, ep_ret, jnp.inf)), nan),
            "ep_return_max": jnp.where(some, jnp.max(jnp.where(done, ep_ret, -jnp.inf)), nan),
            "ep_length_mean": mean(ep_len.astype(jnp.float32)),
            "recent_return": jnp.where(filled > 0, jnp.sum(jnp.where(valid, recent, 0.0))
                                       / jnp.maximum(filled, 1), nan),
        }
        if self.success:
            succ = log.success.at[slot].set(success, mode="drop")
            metrics["success_rate"] = mean(success.astype(jnp.float32))
            metrics["recent_success"] = jnp.where(
                filled > 0, jnp.sum(jnp.where(valid, succ, False)) / jnp.maximum(filled, 1), nan)
        return EpisodeLog(recent, count, succ), metrics

    # One iteration -------------------------------------------------------------------------
    def iteration(self, ls: LoopState):
        ro, (done, ep_ret, ep_len, success), env, obs_rms, ret_rms = self.rollout(ls)
        batch = prepare_batch(self.policy, ls.train.params, ro, self.cfg.gamma,
                              self.cfg.gae_lambda)
        train, stats = self.update(ls.train, batch)
        log, episodes = self.episode_metrics(ls.log, done, ep_ret, ep_len, success)
        finite = {"observations": jnp.all(jnp.isfinite(ro.obs)),
                  "rewards": jnp.all(jnp.isfinite(ro.rewards)),
                  **{f"the learner state, {k}": v for k, v in finite_leaves(train).items()}}
        metrics = {"episodes": episodes, "stats": stats, "finite": finite,
                   "n_updates": train.n_updates}
        return LoopState(train, env, obs_rms, ret_rms, log), metrics
