"""The stable-baselines3 side of `mcpo bench`: PPO set up as our PPO on each env family
(optional extra `mcpo[bench]`; torch and SB3 are imported only when measured).

Its hyperparameters are those of our PPO run's config (the env's family preset, with the bench's
size flags): T, envs, epochs, minibatch size, Adam learning rate (annealed linearly to 0 over
each `learn` call when ours anneals; the value does not change the cost) and epsilon, clip
range, entropy and value coefficients, gradient-norm clip, gamma, lambda, advantage
normalization. CPU, envs in SB3's DummyVecEnv with its Monitor wrapper. Per family:

* classic, box2d, mujoco: MlpPolicy, separate tanh actor and critic of our hidden sizes
  (orthogonal init, SB3's default), VecNormalize with our clip values where ours normalizes.
* atari: SB3's own Atari stack, `make_atari_env` on `gym.make(id, frameskip=1)` (v5's sticky
  actions kept, as ours) with its AtariWrapper (30 no-op starts, max-and-skip 4, episodic
  life, FIRE on reset, 84x84 grayscale, rewards clipped to their sign), `VecFrameStack(4)`,
  CnnPolicy (Nature CNN with a shared trunk, SB3's default), no normalization. Ours
  (mcpo.envs._make_atari) differs: Gymnasium's AtariPreprocessing + FrameStackObservation, no
  FIRE on reset, and a lost life ends the learning episode without a reset
  (AtariTrainingSignals), where SB3's EpisodicLifeEnv reports the episode done and steps a
  no-op as its reset; SB3 stacks channel-last frames and transposes them for its CNN.
* minigrid: our env (mcpo.envs.make_env: the packed uint8 grid), one-hot encoded as our
  network encodes it (MiniGridOneHot, 984 floats) by an observation wrapper, so SB3's
  MlpPolicy sees the features ours sees; no normalization (as our minigrid preset). Ours
  encodes inside the network (host-side sampling never builds the one-hot), SB3 in the env.

Other families have no SB3 setting here (`sb3_unsupported`): the bench skips SB3 there.
"""

from __future__ import annotations

import importlib.util
import math
import time
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np

from mcpo.bench.settings import Settings
from mcpo.config import TrainConfig
from mcpo.envs import env_family, env_network_kind, make_env
from mcpo.networks import make_policy
from mcpo.types import ConfigError

SB3_FAMILIES = ("classic", "box2d", "mujoco", "atari", "minigrid")


class SB3:
    """stable-baselines3 PPO; one `learn` call per turn, continuing the same run."""

    def __init__(self, s: "Settings", env_id: str, workdir: Path):
        self.threads = s.sb3_threads_for(env_network_kind(env_id))
        self.torch_threads = _set_torch_threads(self.threads)
        cfg = s.train_config("ppo", env_id)
        self.steps_per_iteration = cfg.batch_size
        self.model = make_sb3_ppo(cfg)
        self.fresh = True

    def iterate(self, n: int) -> list[tuple[float, float, float]]:
        _set_torch_threads(self.threads)  # process-wide: another env's SB3 may have set it
        timer = _sb3_timer()
        self.model.learn(total_timesteps=n * self.steps_per_iteration, callback=timer,
                         reset_num_timesteps=self.fresh)
        self.fresh = False
        if len(timer.starts) != n or len(timer.ends) != n:
            raise RuntimeError(f"sb3-ppo: expected {n} iterations, timed {len(timer.starts)}")
        bounds = timer.starts + [timer.done]
        return [(b - a, e - a, b - e) for a, e, b in zip(bounds, timer.ends, bounds[1:])]

    def close(self) -> None:
        self.model.get_env().close()


_TORCH_DEFAULT_THREADS: list[int] = []  # torch's own choice, read before we first change it


def _set_torch_threads(n: int | None) -> int:
    """Set torch's intra-op threads to `n` (None: torch's default); returns the count."""
    import torch

    if not _TORCH_DEFAULT_THREADS:
        _TORCH_DEFAULT_THREADS.append(torch.get_num_threads())
    want = n or _TORCH_DEFAULT_THREADS[0]
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
    return want


def sb3_unavailable() -> str | None:
    """None when stable-baselines3 (and torch) import; else why not."""
    if importlib.util.find_spec("stable_baselines3") is None:
        return "stable-baselines3 is not installed (pip install 'mcpo[bench]')"
    try:
        import stable_baselines3  # noqa: F401
        import torch  # noqa: F401
    except Exception as e:  # a broken torch install, say
        return f"stable-baselines3 does not import ({type(e).__name__}: {e})"
    return None


def sb3_unsupported(env_id: str) -> str | None:
    """None when the SB3 side has a setting for `env_id`'s family; else why not."""
    fam = env_family(env_id)
    if fam in SB3_FAMILIES:
        return None
    return (f"no SB3 setting for the {fam!r} family (the bench has one for "
            f"{', '.join(SB3_FAMILIES)})")


def make_sb3_ppo(cfg: TrainConfig):
    """SB3 PPO set up as our PPO run of `cfg` (a TrainConfig of --algo ppo, e.g.
    `mcpo.make_config("ppo", env_id)`); the module docstring says how, per family."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.utils import LinearSchedule

    why = sb3_unsupported(cfg.env_id)
    if why:
        raise ConfigError(f"{cfg.env_id}: {why}.")
    atari = env_family(cfg.env_id) == "atari"
    h = list(cfg.hidden_sizes)
    net = {} if atari else dict(net_arch=dict(pi=h, vf=h), activation_fn=torch.nn.Tanh)
    lr = LinearSchedule(cfg.learning_rate, 0.0, 1.0) if cfg.anneal_lr else cfg.learning_rate
    model = PPO("CnnPolicy" if atari else "MlpPolicy", _sb3_env(cfg), n_steps=cfg.num_steps,
               batch_size=cfg.minibatch_size, n_epochs=cfg.update_epochs, learning_rate=lr,
               gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip_range=cfg.algo_config.clip_coef,
               ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
               normalize_advantage=cfg.norm_adv,
               policy_kwargs=dict(net, optimizer_kwargs=dict(eps=cfg.adam_eps)),
               device="cpu", seed=cfg.seed, verbose=0)
    # A logger with no outputs: SB3's default one creates a directory SB3-<date> in /tmp for
    # every model, even with verbose=0.
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def _sb3_env(cfg: TrainConfig):
    """The family's vector env for SB3 (module docstring), normalized as `cfg` says."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

    fam = env_family(cfg.env_id)
    if fam == "atari":
        import ale_py

        gym.register_envs(ale_py)
        env = VecFrameStack(make_atari_env(cfg.env_id, n_envs=cfg.num_envs, seed=cfg.seed,
                                           env_kwargs={"frameskip": 1},
                                           vec_env_cls=DummyVecEnv), n_stack=4)
    else:
        make = partial(_one_hot_minigrid, cfg.env_id) if fam == "minigrid" else cfg.env_id
        env = make_vec_env(make, n_envs=cfg.num_envs, seed=cfg.seed, vec_env_cls=DummyVecEnv)
    if not (cfg.norm_obs or cfg.norm_reward):
        return env
    return VecNormalize(env, norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward,
                        clip_obs=cfg.clip_obs, clip_reward=cfg.clip_reward, gamma=cfg.gamma)


class MiniGridOneHotObs(gym.ObservationWrapper):
    """Our MiniGrid env's packed grid (mcpo.envs.MiniGridObs) -> the float32 one-hot vector our
    network encodes it to (mcpo.networks.MiniGridOneHot), for SB3's MlpPolicy."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.encoder = make_policy(env.observation_space, env.action_space,
                                   kind="minigrid").encoder
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.encoder.dim,), np.float32)

    def observation(self, obs):
        return self.encoder(obs, xp=np)


def _one_hot_minigrid(env_id: str) -> gym.Env:
    return MiniGridOneHotObs(make_env(env_id))


def _sb3_timer():
    from stable_baselines3.common.callbacks import BaseCallback

    class Timer(BaseCallback):
        """Timestamps at each rollout's start and end, and at the end of training."""

        def __init__(self):
            super().__init__()
            self.starts: list[float] = []
            self.ends: list[float] = []
            self.done = math.nan

        def _on_rollout_start(self) -> None:
            self.starts.append(time.perf_counter())

        def _on_rollout_end(self) -> None:
            self.ends.append(time.perf_counter())

        def _on_training_end(self) -> None:
            self.done = time.perf_counter()

        def _on_step(self) -> bool:
            return True

    return Timer()
