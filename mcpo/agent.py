"""A trained policy, usable on a Gymnasium env: `mcpo.load(run_dir).act(obs)`.

A run of a pure-JAX backend (gymnax) loads the same way; its observations are the flat vectors
of its env (for classic control the same as the Gymnasium twin's).

The observation-normalization statistics saved with the run are frozen here, so the agent sees
observations scaled exactly as at the end of training. Observations are those of
`mcpo.envs.make_env(env_id)` (the family's wrappers: Atari's preprocessing and frame stack,
MiniGrid's packed grid; a raw MiniGrid Dict observation is accepted too). Evaluation uses the
evaluation env: no episodic life, unclipped rewards.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from mcpo.checkpoint import check_checkpoint_meta, load_checkpoint, restore
from mcpo.config import TrainConfig
from mcpo.envs import (RunningMeanStd, make_env, network_kind, normalize_obs, obs_layout,
                       pack_minigrid_obs)
from mcpo.jaxenv.evaluate import evaluate_episodes
from mcpo.jaxenv.registry import is_jax_backend, make_jax_env, twin
from mcpo.jaxenv.running import from_state_dict
from mcpo.networks import make_policy
from mcpo.rollout import Episode, play_episodes
from mcpo.rundir import find_checkpoint, read_config
from mcpo.types import SEED_MAX, ConfigError, StorageError, param

VIDEO_SUFFIXES = (".gif", ".mp4")


@dataclass(frozen=True)
class EvalSettings:
    """`mcpo eval`'s numeric settings (flags of the same names), checked by `check_fields`."""

    episodes: int = param(10, "Episodes to run.", low=1, high=10**6)
    seed: int = param(0, "Seed of the first episode (episode i uses seed + i).", low=0,
                      high=SEED_MAX)
    deterministic: bool = param(False, "Act with the distribution's mean/argmax instead of "
                                "sampling.")


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

    def _check_obs(self, obs) -> tuple[np.ndarray, bool]:
        """(obs in the harness's layout, whether it is a single observation); ConfigError naming the
        expected shape for anything else (a wrong shape would broadcast silently)."""
        want = self.obs_shape
        batch = "(" + ", ".join(["N", *map(str, want)]) + ("," if not want else "") + ")"
        shapes = f"{want} (one observation) or {batch} (a batch)"
        try:
            arr = np.asarray(obs)
        except Exception as e:  # noqa: BLE001 - ragged lists and the like
            raise ConfigError(f"Agent.act: the observation is not an array ({e}); expected "
                              f"shape {shapes}.") from None
        if arr.dtype.kind not in "biuf":
            raise ConfigError(f"Agent.act: observation of dtype {arr.dtype} "
                              f"({type(obs).__name__}); expected real numbers of shape "
                              f"{shapes}.")
        shape, dtype = self._layout  # the harness's layout (uint8 images stay uint8)
        if arr.shape == want:
            return arr.astype(dtype).reshape((1,) + shape), True
        if arr.ndim == len(want) + 1 and arr.shape[1:] == want:
            if arr.shape[0] == 0:
                raise ConfigError(f"Agent.act: empty batch of shape {arr.shape}; expected "
                                  f"at least one observation, shape {shapes}.")
            return arr.astype(dtype).reshape((arr.shape[0],) + shape), False
        got = "a scalar" if arr.ndim == 0 else f"shape {arr.shape}"
        raise ConfigError(f"Agent.act: observation of {got}; this agent expects {shapes}.")

    def act(self, obs, deterministic: bool = True):
        """Action(s) for one observation (shape = the observation space's) or a batch
        (N, *that shape); raw MiniGrid dict observations are packed first; Box actions are
        clipped to the bounds."""
        if isinstance(obs, dict) and {"image", "direction"} <= set(obs):  # raw MiniGrid obs
            obs = pack_minigrid_obs(obs)
        x, single = self._check_obs(obs)
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
    check_checkpoint_meta(meta, path, cfg.algo)
    if is_jax_backend(cfg.backend):  # the spaces of the env it trained on (flat observations)
        jenv = make_jax_env(cfg.backend, cfg.env_id)
        obs_space, act_space = jenv.observation_space, jenv.action_space
        kind = jenv.network_kind
    else:
        env = make_env(cfg.env_id)
        obs_space, act_space = env.observation_space, env.action_space
        env.close()
        kind = network_kind(cfg.env_id, obs_space)
    policy = make_policy(obs_space, act_space, cfg.hidden_sizes, kind)
    template = jax.eval_shape(policy.init, jax.random.PRNGKey(0))["actor"]
    actor = restore(template, arrays, "state.params['actor']", str(path))
    rms = None
    if cfg.norm_obs:
        rms = RunningMeanStd(obs_space.shape)
        rms.load_state_dict(restore(rms.state_dict(), arrays, "host['obs_rms']", str(path)))
    return Agent(policy, actor, rms, cfg.clip_obs, obs_space, act_space, cfg)


def run_episodes(agent: Agent, env_id: str, episodes: int, seed: int = 0,
                 deterministic: bool = True, video: str | None = None,
                 should_stop=lambda: False, backend: str | None = None) -> list[Episode]:
    """Run full episodes on a fresh evaluation env (Atari: whole games, unclipped scores);
    returns them as `Episode`s (raw return, length, success: terminated with a positive last
    reward). `should_stop()` is polled every step; when it turns true,
    `mcpo.rollout.Interrupted` is raised. A `video` path is checked before the first episode
    (ConfigError if it cannot be written).

    `backend`: whose env runs the episodes; by default the one the agent trained on. An agent
    of a pure-JAX backend runs on that backend's env (all episodes at once, in JAX; no video;
    the episodes carry their returns and successes, length 0) or, with
    backend='gymnasium', on the Gymnasium twin of its env id."""
    if backend is None:
        cfg = getattr(agent, "config", None)  # anything with seed() and act() will do
        backend = cfg.backend if cfg is not None else "gymnasium"
    if is_jax_backend(backend):
        if video:
            alt = twin(backend, env_id)
            how = (f"record it on the Gymnasium twin {alt!r} with --backend gymnasium"
                   if alt else f"{env_id!r} has no Gymnasium twin to render")
            raise ConfigError(f"--video: {backend} environments have no renderer; {how}.")
        rms = agent.obs_rms
        stats = None if rms is None else from_state_dict(rms.state_dict())
        eps = evaluate_episodes(make_jax_env(backend, env_id), agent.policy, agent.actor,
                                stats, agent.clip_obs, episodes, seed, deterministic)
        return [Episode(r, 0, succ) for r, succ in eps]
    if video:
        check_video_path(video)
    env = make_env(env_id, render_mode="rgb_array" if video else None)
    agent.seed(seed)
    frames = []
    try:
        out = play_episodes(env, lambda obs: agent.act(obs, deterministic), episodes, seed,
                            should_stop, (lambda: frames.append(env.render())) if video
                            else None)
    finally:
        env.close()
    if video:
        write_video(video, frames, fps=env.metadata.get("render_fps", 30))
    return out


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int = 0,
             deterministic: bool = True, video: str | None = None,
             should_stop=lambda: False, backend: str | None = None) -> list[float]:
    """`run_episodes`' returns."""
    return [e.ret for e in run_episodes(agent, env_id, episodes, seed, deterministic, video,
                                        should_stop, backend)]


def check_video_path(path) -> None:
    """ConfigError unless a video can be written to `path`: a .gif (or .mp4 with
    imageio-ffmpeg), in an existing, writable directory, not a directory itself."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--video {path} is a directory; give a file path, e.g. "
                          f"{p / 'episode.gif'}.")
    parent = p.parent
    if not parent.exists():
        raise ConfigError(f"--video {path}: the directory {parent} does not exist.")
    if not parent.is_dir():
        raise ConfigError(f"--video {path}: {parent} is a file, not a directory.")
    suffix = p.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"--video {path}: the file name must end in .gif (or .mp4 with "
                          f"imageio-ffmpeg installed); got {suffix or 'no extension'!r}.")
    if importlib.util.find_spec("imageio") is None:
        raise ConfigError("--video needs imageio: pip install 'mcpo[video]'.")
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ConfigError(f"--video {path}: .mp4 needs imageio-ffmpeg (pip install "
                          f"imageio-ffmpeg); or use a .gif path.")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ConfigError(f"--video {path}: {p if p.exists() else parent} is not writable by "
                          f"this user.")


def write_video(path: str, frames: list, fps: int) -> None:
    """Write the frames to a temp file beside `path`, then rename it over `path`: an error or
    Ctrl-C while encoding leaves no partial video (and any old file at `path` intact)."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError("--video needs imageio: pip install 'mcpo[video]'.") from None
    p = Path(path)
    tmp = p.with_name(f".{p.stem}.tmp-{os.getpid()}{p.suffix}")  # keeps the format's suffix
    try:
        if p.suffix.lower() == ".gif":
            imageio.mimsave(tmp, frames, duration=1000 / fps, loop=0)
        else:
            imageio.mimsave(tmp, frames, fps=fps)
        os.replace(tmp, p)
    except OSError as e:
        raise StorageError(f"Could not write video {path}: {e.strerror or e}.") from None
    except Exception as e:  # noqa: BLE001 - an encoder backend missing or failing
        raise ConfigError(f"Could not write video {path} ({e}). Use a .gif path, or "
                          f"pip install imageio-ffmpeg for .mp4.") from None
    finally:
        if tmp.exists():
            tmp.unlink()
