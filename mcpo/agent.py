"""A trained policy, usable on a plain Gymnasium env: `mcpo.load(run_dir).act(obs)`.

The observation-normalization statistics saved with the run are frozen here, so the agent sees
observations scaled exactly as at the end of training.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from mcpo.checkpoint import load_checkpoint, restore
from mcpo.config import TrainConfig
from mcpo.envs import RunningMeanStd, make_env, normalize_obs
from mcpo.networks import make_policy
from mcpo.rollout import run_episodes
from mcpo.rundir import find_checkpoint, read_config
from mcpo.types import ConfigError


class Agent:
    def __init__(self, policy, actor, obs_rms: RunningMeanStd | None, clip_obs: float,
                 observation_space, action_space, config: TrainConfig | None = None):
        self.policy = policy
        self.obs_shape = tuple(observation_space.shape)
        self.actor = jax.tree.map(np.asarray, jax.device_get(actor))
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
        obs = np.asarray(obs, np.float32)
        single = obs.ndim == len(self.obs_shape)
        x = obs.reshape(1, -1) if single else obs.reshape(obs.shape[0], -1)
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
    policy = make_policy(env.observation_space, env.action_space, cfg.hidden_sizes)
    template = jax.eval_shape(policy.init, jax.random.PRNGKey(0))["actor"]
    actor = restore(template, arrays, "state.params['actor']", str(path))
    rms = None
    if cfg.norm_obs:
        rms = RunningMeanStd(env.observation_space.shape)
        rms.load_state_dict(restore(rms.state_dict(), arrays, "host['obs_rms']", str(path)))
    agent = Agent(policy, actor, rms, cfg.clip_obs, env.observation_space, env.action_space, cfg)
    env.close()
    return agent


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int = 0,
             deterministic: bool = True, video: str | None = None,
             should_stop=lambda: False) -> list[float]:
    """Run full episodes on a fresh env; returns their (raw) returns. `should_stop()` is
    polled every step; when it turns true, `mcpo.rollout.Interrupted` is raised."""
    env = make_env(env_id, render_mode="rgb_array" if video else None)
    agent.seed(seed)
    frames = []
    try:
        returns = run_episodes(env, lambda obs: agent.act(obs, deterministic), episodes, seed,
                               should_stop, (lambda: frames.append(env.render())) if video
                               else None)
    finally:
        env.close()
    if video:
        write_video(video, frames, fps=env.metadata.get("render_fps", 30))
    return returns


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
