"""A trained policy, usable on a Gymnasium env: `mcpo.load(run_dir).act(obs)`.

The observation-normalization statistics saved with the run are frozen here, so the agent sees
observations scaled exactly as at the end of training. Observations are those of
`mcpo.envs.make_env(env_id)` (the family's wrappers: Atari's preprocessing and frame stack,
MiniGrid's packed grid; a raw MiniGrid Dict observation is accepted too). Evaluation uses the
evaluation env: no episodic life, unclipped rewards.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from mcpo.checkpoint import load_checkpoint, restore
from mcpo.config import TrainConfig
from mcpo.envs import (RunningMeanStd, make_env, network_kind, normalize_obs, obs_layout,
                       pack_minigrid_obs)
from mcpo.networks import make_policy
from mcpo.rollout import Episode, Interrupted
from mcpo.rundir import find_checkpoint, read_config
from mcpo.types import ConfigError


class Agent:
    def __init__(self, policy, actor, obs_rms: RunningMeanStd | None, clip_obs: float,
                 observation_space, action_space, config: TrainConfig | None = None):
        self.policy = policy
        self.obs_shape = tuple(observation_space.shape)
        self._layout = obs_layout(observation_space)
        self.actor = policy.host_params(actor)
        self.obs_rms = obs_rms
        self.clip_obs = clip_obs
        self.action_space = action_space
        self.config = config
        self._discrete = not hasattr(action_space, "low")
        self._rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs, deterministic: bool = True):
        """Action(s) for one observation or a batch; Box actions are clipped to the bounds."""
        if isinstance(obs, dict):  # raw MiniGrid observation(s)
            obs = pack_minigrid_obs(obs)
        shape, dtype = self._layout
        obs = np.asarray(obs, dtype)
        single = obs.ndim == len(self.obs_shape)
        x = obs.reshape((1 if single else obs.shape[0],) + shape)
        x = normalize_obs(x, self.obs_rms, self.clip_obs)
        if deterministic:
            a = self.policy.mode_np(self.actor, x)
        else:
            a = self.policy.sample_np(self.actor, x,
                                      self.policy.sample_noise(self._rng, (x.shape[0],)))
        if self._discrete:
            a = a.astype(np.int64)
        else:
            a = np.clip(a, self.action_space.low, self.action_space.high).astype(
                self.action_space.dtype)
            a = a.reshape((a.shape[0],) + self.action_space.shape)
        return a[0] if single else a


def load(run_dir, checkpoint: str | None = None) -> Agent:
    """Load the agent of a run directory (latest checkpoint, or `checkpoint` file name/path)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    path = find_checkpoint(run_dir, checkpoint)
    arrays, meta = load_checkpoint(path)
    env = make_env(cfg.env_id)
    policy = make_policy(env.observation_space, env.action_space, cfg.hidden_sizes,
                         network_kind(cfg.env_id, env.observation_space))
    template = jax.eval_shape(policy.init, jax.random.PRNGKey(0))["actor"]
    actor = restore(template, arrays, "state.params['actor']", str(path))
    rms = None
    if cfg.norm_obs:
        rms = RunningMeanStd(env.observation_space.shape)
        rms.load_state_dict(restore(rms.state_dict(), arrays, "host['obs_rms']", str(path)))
    agent = Agent(policy, actor, rms, cfg.clip_obs, env.observation_space, env.action_space, cfg)
    env.close()
    return agent


def run_episodes(agent: Agent, env_id: str, episodes: int, seed: int = 0,
                 deterministic: bool = True, video: str | None = None,
                 should_stop=lambda: False) -> list[Episode]:
    """Run full episodes on a fresh evaluation env (Atari: whole games, unclipped scores);
    returns them as `Episode`s (raw return, length, success: terminated with a positive last
    reward). `should_stop()` is polled every step; when it turns true,
    `mcpo.rollout.Interrupted` is raised."""
    env = make_env(env_id, render_mode="rgb_array" if video else None)
    agent.seed(seed)
    frames, out = [], []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            done, total, n, r, term = False, 0.0, 0, 0.0, False
            while not done:
                if should_stop():
                    raise Interrupted()
                if video:
                    frames.append(env.render())
                obs, r, term, trunc, _ = env.step(agent.act(obs, deterministic))
                total += float(r)
                n += 1
                done = term or trunc
            out.append(Episode(total, n, bool(term and r > 0)))
    finally:
        env.close()
    if video:
        write_video(video, frames, fps=env.metadata.get("render_fps", 30))
    return out


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int = 0,
             deterministic: bool = True, video: str | None = None,
             should_stop=lambda: False) -> list[float]:
    """`run_episodes`' returns."""
    return [e.ret for e in run_episodes(agent, env_id, episodes, seed, deterministic, video,
                                        should_stop)]


def write_video(path: str, frames: list, fps: int) -> None:
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError("--video needs imageio: pip install 'mcpo[video]'.") from None
    path = str(path)
    if path.endswith(".gif"):
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    else:
        try:
            imageio.mimsave(path, frames, fps=fps)
        except Exception as e:  # noqa: BLE001 - backend missing (e.g. no ffmpeg)
            raise ConfigError(f"Could not write video {path} ({e}). Use a .gif path, or "
                              f"pip install imageio-ffmpeg for .mp4.") from None
