"""The stable-baselines3 side of `mcpo bench`: PPO set up exactly as ours (optional extra
`mcpo[bench]`; torch and SB3 are imported only when measured)."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

from mcpo.bench.settings import Settings
from mcpo.config import TrainConfig

class SB3:
    """stable-baselines3 PPO; one `learn` call per turn, continuing the same run."""

    def __init__(self, s: "Settings", env_id: str, workdir: Path):
        import torch

        if s.sb3_threads:
            torch.set_num_threads(s.sb3_threads)
        self.batch = s.batch_size
        self.model = make_sb3_ppo(env_id, num_envs=s.num_envs, num_steps=s.num_steps,
                                  update_epochs=s.update_epochs,
                                  num_minibatches=s.num_minibatches, seed=s.seed,
                                  hidden_sizes=s.hidden_sizes)
        self.fresh = True
        self.torch_threads = torch.get_num_threads()

    def iterate(self, n: int) -> list[tuple[float, float, float]]:
        timer = _sb3_timer()
        self.model.learn(total_timesteps=n * self.batch, callback=timer,
                         reset_num_timesteps=self.fresh)
        self.fresh = False
        if len(timer.starts) != n or len(timer.ends) != n:
            raise RuntimeError(f"sb3-ppo: expected {n} iterations, timed {len(timer.starts)}")
        bounds = timer.starts + [timer.done]
        return [(b - a, e - a, b - e) for a, e, b in zip(bounds, timer.ends, bounds[1:])]

    def close(self) -> None:
        self.model.get_env().close()


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


def make_sb3_ppo(env_id: str, *, num_envs: int = 1, num_steps: int = 2048,
                 update_epochs: int = 10, num_minibatches: int = 32, seed: int = 1,
                 hidden_sizes=(64, 64)):
    """SB3 PPO set up as our PPO: same T, epochs, minibatch size (n_steps * n_envs /
    num_minibatches), separate 64x64 tanh actor and critic (orthogonal init, SB3's default),
    VecNormalize on observations and rewards with our clip values, Adam 3e-4, GAE 0.95,
    clip 0.2, value coefficient 0.5, gradient-norm clip 0.5, CPU; envs in SB3's DummyVecEnv
    with its Monitor wrapper, as `make_vec_env` gives them."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    d = TrainConfig()  # our defaults, so both sides stay in step if they change
    env = VecNormalize(make_vec_env(env_id, n_envs=num_envs, seed=seed,
                                    vec_env_cls=DummyVecEnv),
                       norm_obs=True, norm_reward=True, clip_obs=d.clip_obs,
                       clip_reward=d.clip_reward, gamma=d.gamma)
    return PPO("MlpPolicy", env, n_steps=num_steps,
               batch_size=num_steps * num_envs // num_minibatches, n_epochs=update_epochs,
               learning_rate=d.learning_rate, gamma=d.gamma, gae_lambda=d.gae_lambda,
               clip_range=0.2, ent_coef=d.ent_coef, vf_coef=d.vf_coef,
               max_grad_norm=d.max_grad_norm, normalize_advantage=d.norm_adv,
               policy_kwargs=dict(net_arch=dict(pi=list(hidden_sizes), vf=list(hidden_sizes)),
                                  activation_fn=torch.nn.Tanh),
               device="cpu", seed=seed, verbose=0)


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
