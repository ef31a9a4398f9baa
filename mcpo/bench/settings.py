"""`mcpo bench` settings: what is measured and how long (constants and `Settings`)."""

from __future__ import annotations

from dataclasses import dataclass

from mcpo.algos.mcpo import MCPOConfig
from mcpo.config import TrainConfig
from mcpo.types import ConfigError

SYSTEMS = ("env", "rollout", "ppo", "mcpo", "sb3-ppo")
DEFAULT_ENVS = ("Pendulum-v1", "HalfCheetah-v5")
# Per env: (rounds, our iterations per round, SB3 iterations per round). Full: ~4 min with SB3
# on 2 quiet cores; quick: ~1 min.
FULL = dict(rounds=20, iterations=2, sb3_iterations=1)
QUICK = dict(rounds=3, iterations=1, sb3_iterations=1)
TARGETS = (("ppo", 8.0), ("mcpo", 5.0))  # ours / SB3 PPO, docs/design.md §7
RATIOS = (("ppo", "sb3-ppo"), ("mcpo", "sb3-ppo"), ("ppo", "env"), ("mcpo", "env"),
          ("rollout", "env"), ("sb3-ppo", "env"))
TURN_TIMEOUT = 600.0  # seconds one turn of one system may take before the bench gives up

@dataclass(frozen=True)
class Settings:
    env_ids: tuple[str, ...] = DEFAULT_ENVS
    num_envs: int = 1
    num_steps: int = 2048
    update_epochs: int = 10
    num_minibatches: int = 32
    rounds: int = FULL["rounds"]
    iterations: int = FULL["iterations"]
    sb3_iterations: int = FULL["sb3_iterations"]
    memory_size: int = 10
    seed: int = 1
    systems: tuple[str, ...] = SYSTEMS
    sb3_threads: int = 1
    compile_cache: bool = False
    hidden_sizes: tuple[int, ...] = (64, 64)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    def iterations_of(self, system: str) -> int:
        return self.sb3_iterations if system == "sb3-ppo" else self.iterations

    def train_config(self, algo: str, env_id: str, run_dir: str = ""):
        """The TrainConfig of our runs: defaults, except no end-of-run evaluation, no progress
        bar, no periodic snapshots (they are spread over a run's length, so a short run would
        pay one every iteration), and a budget of exactly the iterations the bench asks for."""
        n_iter = 1 + self.rounds * self.iterations
        return TrainConfig(
            algo=algo, env_id=env_id, total_timesteps=n_iter * self.batch_size,
            seed=self.seed, num_envs=self.num_envs, num_steps=self.num_steps,
            update_epochs=self.update_epochs, num_minibatches=self.num_minibatches,
            hidden_sizes=self.hidden_sizes, run_dir=run_dir, snapshots=0, eval_episodes=0,
            progress=False,
            algo_config=MCPOConfig(memory_size=self.memory_size) if algo == "mcpo" else None)

    def validate(self) -> None:
        for name in ("rounds", "iterations", "sb3_iterations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1; got "
                                  f"{getattr(self, name)}.")
        if self.sb3_threads < 0:
            raise ConfigError(f"--sb3-threads must be >= 0; got {self.sb3_threads}.")
        if not self.env_ids:
            raise ConfigError("--env-ids needs at least one env id.")
        if not self.systems:
            raise ConfigError("--systems needs at least one system.")
        for env_id in self.env_ids:  # unknown ids, bad sizes: the trainer's own checks
            self.train_config("mcpo", env_id).validate()
