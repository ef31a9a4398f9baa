"""`mcpo bench` settings: what is measured and how long (constants and `Settings`)."""

from __future__ import annotations

from dataclasses import dataclass

from mcpo.algos.common import MAX_OPTIMIZER_STEPS
from mcpo.algos.mcpo import MCPOConfig
from mcpo.config import MAX_BATCH, TrainConfig
from mcpo.envs import ENVPOOL
from mcpo.types import MAX_TIMESTEPS, SEED_MAX, ConfigError, check_fields, param

HOST_BACKENDS = ("gymnasium", ENVPOOL)  # what `mcpo bench --backend` can measure ours on
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
    """What `mcpo bench` measures; the numeric fields are its flags, with their bounds."""

    env_ids: tuple[str, ...] = DEFAULT_ENVS
    num_envs: int = param(1, "parallel envs", low=1, high=4096)
    num_steps: int = param(2048, "steps per env per rollout, T", low=1, high=MAX_BATCH)
    update_epochs: int = param(10, "epochs K", low=1, high=10_000)
    num_minibatches: int = param(32, "minibatches per epoch", low=1, high=MAX_BATCH)
    rounds: int = param(FULL["rounds"], "rounds per env", low=1, high=10_000)
    iterations: int = param(FULL["iterations"], "iterations per turn", low=1, high=10_000)
    sb3_iterations: int = param(FULL["sb3_iterations"], "iterations per turn of SB3", low=1,
                                high=10_000)
    memory_size: int = param(10, "MCPO's N", low=1, high=1024)
    seed: int = param(1, "seed", low=0, high=SEED_MAX)
    systems: tuple[str, ...] = SYSTEMS
    sb3_threads: int = param(1, "torch threads for SB3 (0: torch's default)", low=0,
                             high=1024)
    compile_cache: bool = False
    backend: str = "gymnasium"  # whose vector env ours step (SB3 always steps Gymnasium's)
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
            hidden_sizes=self.hidden_sizes, run_dir=run_dir, backend=self.backend,
            snapshots=0, eval_episodes=0,
            progress=False,
            algo_config=MCPOConfig(memory_size=self.memory_size) if algo == "mcpo" else None)

    def validate(self) -> None:
        check_fields(self)  # each flag's own range first, so the message names that flag
        n_iter = 1 + self.rounds * self.iterations
        steps = n_iter * self.batch_size
        updates = n_iter * self.update_epochs * self.num_minibatches
        if steps > MAX_TIMESTEPS or updates > MAX_OPTIMIZER_STEPS:
            raise ConfigError(
                f"--rounds {self.rounds} x --iterations {self.iterations} make training runs "
                f"of {n_iter:,} iterations ({steps:.3g} env steps, {updates:.3g} optimizer "
                f"steps), more than a run may take ({MAX_TIMESTEPS:.0e} steps, "
                f"{MAX_OPTIMIZER_STEPS:,} optimizer steps).")
        if self.backend not in HOST_BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(HOST_BACKENDS)} (the "
                              f"host-side backends); got {self.backend!r}.")
        if not self.env_ids:
            raise ConfigError("--env-ids needs at least one env id.")
        if not self.systems:
            raise ConfigError("--systems needs at least one system.")
        for env_id in self.env_ids:  # unknown ids, bad sizes: the trainer's own checks
            self.train_config("mcpo", env_id).validate()
