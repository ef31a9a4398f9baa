"""A trained policy, usable on a plain Gymnasium env: `mcpo.load(run_dir).act(obs)`.

A run of a pure-JAX backend (gymnax) loads the same way; its observations are the flat vectors
of its env (for classic control the same as the Gymnasium twin's).

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
from mcpo.jaxenv.evaluate import evaluate_episodes
from mcpo.jaxenv.registry import is_jax_backend, make_jax_env, twin
from mcpo.jaxenv.running import from_state_dict
from mcpo.networks import make_policy
from mcpo.rollout import Interrupted
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
    if is_jax_backend(cfg.backend):  # the spaces of the env it trained on (flat observations)
        jenv = make_jax_env(cfg.backend, cfg.env_id)
        obs_space, act_space = jenv.observation_space, jenv.action_space
    else:
        env = make_env(cfg.env_id)
        obs_space, act_space = env.observation_space, env.action_space
        env.close()
    policy = make_policy(obs_space, act_space, cfg.hidden_sizes)
    template = jax.eval_shape(policy.init, jax.random.PRNGKey(0))["actor"]
    actor = restore(template, arrays, "state.params['actor']", str(path))
    rms = None
    if cfg.norm_obs:
        rms = RunningMeanStd(obs_space.shape)
        rms.load_state_dict(restore(rms.state_dict(), arrays, "host['obs_rms']", str(path)))
    return Agent(policy, actor, rms, cfg.clip_obs, obs_space, act_space, cfg)


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int = 0,
             deterministic: bool = True, video: str | None = None,
             should_stop=lambda: False, backend: str | None = None) -> list[float]:
    """Run full episodes on a fresh env; returns their (raw) returns. `should_stop()` is
    polled every step; when it turns true, `mcpo.rollout.Interrupted` is raised.

    `backend`: whose env runs the episodes; by default the one the agent trained on. An agent
    of a pure-JAX backend runs on that backend's env (all episodes at once, in JAX; no video)
    or, with backend='gymnasium', on the Gymnasium twin of its env id."""
    if backend is None:
        backend = agent.config.backend if agent.config is not None else "gymnasium"
    if is_jax_backend(backend):
        if video:
            alt = twin(backend, env_id)
            how = (f"record it on the Gymnasium twin {alt!r} with --backend gymnasium"
                   if alt else f"{env_id!r} has no Gymnasium twin to render")
            raise ConfigError(f"--video: {backend} environments have no renderer; {how}.")
        rms = agent.obs_rms
        stats = None if rms is None else from_state_dict(rms.state_dict())
        return evaluate_episodes(make_jax_env(backend, env_id), agent.policy, agent.actor,
                                 stats, agent.clip_obs, episodes, seed, deterministic)
    env = make_env(env_id, render_mode="rgb_array" if video else None)
    agent.seed(seed)
    frames, returns = [], []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            done, total = False, 0.0
            while not done:
                if should_stop():
                    raise Interrupted()
                if video:
                    frames.append(env.render())
                obs, r, term, trunc, _ = env.step(agent.act(obs, deterministic))
                total += float(r)
                done = term or trunc
            returns.append(total)
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
