"""`mcpo bench` settings: what is measured and how long (constants and `Settings`), and each
env's setting (`EnvSetting`): its family's training preset, with the bench's size flags over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mcpo import xla_threads
from mcpo.algos.common import MAX_OPTIMIZER_STEPS
from mcpo.config import MAX_BATCH, RolloutSizes, TrainConfig
from mcpo.envs import ENVPOOL, env_family
from mcpo.presets import make_config
from mcpo.types import MAX_TIMESTEPS, SEED_MAX, ConfigError, check_fields, param

HOST_BACKENDS = ("gymnasium", ENVPOOL)  # what `mcpo bench --backend` can measure ours on
SYSTEMS = ("env", "rollout", "ppo", "mcpo", "mcpo-paper", "sb3-ppo")
# Our learners: system -> (algo, its own flags). "mcpo" is the library default (per-slot
# attention features on, docs/design.md §4.1); "mcpo-paper" the paper's context-only attention,
# measured beside it so the default's cost shows.
OURS = {"ppo": ("ppo", {}), "mcpo": ("mcpo", {}),
        "mcpo-paper": ("mcpo", {"attn_slot_features": False})}
DEFAULT_ENVS = ("Pendulum-v1", "HalfCheetah-v5")
# Per env: (rounds, our iterations per round, SB3 iterations per round). Full: ~4 min with SB3
# on 2 quiet cores for the default envs; quick: ~1 min. An Atari env at its preset (CNN updates
# of ~10 s per iteration here) adds ~4 min to a quick run and ~25 min to a full one.
FULL = dict(rounds=20, iterations=2, sb3_iterations=1)
QUICK = dict(rounds=3, iterations=1, sb3_iterations=1)
# The bench's flags that override the sizes of every env's preset (None: the preset's).
SIZE_FIELDS = ("num_envs", "num_steps", "update_epochs", "num_minibatches")
# Ours / SB3 PPO, per env family (docs/design.md §7): system -> the ratio it must reach. A
# family not listed has no target; its ratios are still reported.
_VECTOR_TARGETS = {"ppo": 8.0, "mcpo": 6.0}
TARGETS: dict[str, dict[str, float]] = {"classic": _VECTOR_TARGETS, "box2d": _VECTOR_TARGETS,
                                        "mujoco": _VECTOR_TARGETS, "atari": {"ppo": 2.0}}
RATIOS = (("ppo", "sb3-ppo"), ("mcpo", "sb3-ppo"), ("mcpo-paper", "sb3-ppo"), ("ppo", "env"),
          ("mcpo", "env"), ("rollout", "env"), ("sb3-ppo", "env"))
TURN_TIMEOUT = 600.0  # seconds one turn of one system may take before the bench gives up


def targets_for(env_id: str) -> dict[str, float]:
    """system -> the ratio to SB3 PPO it must reach on `env_id` (empty: no target)."""
    return dict(TARGETS.get(env_family(env_id), {}))


@dataclass(frozen=True)
class EnvSetting(RolloutSizes):
    """One env's setting, the same for every system measured on it: the sizes and networks of
    our PPO run there (the family preset, what `mcpo train --algo ppo --env-id ENV` uses, with
    the bench's size flags over it), the network kind our runs build (mcpo.envs.network_kind)
    and the targets that apply."""

    env_id: str
    family: str
    preset: str                  # '' when the family has none
    num_envs: int
    num_steps: int
    update_epochs: int
    num_minibatches: int
    hidden_sizes: tuple[int, ...]
    norm_obs: bool
    norm_reward: bool
    network: str
    flags: tuple[str, ...]       # the size fields given as flags, over the preset's
    targets: Mapping[str, float]


def _sizes(cfg: TrainConfig) -> tuple[int, ...]:
    return tuple(getattr(cfg, k) for k in SIZE_FIELDS)


@dataclass(frozen=True)
class Settings:
    """What `mcpo bench` measures; the numeric fields are its flags, with their bounds. The
    size fields are None unless given: each env then uses its family preset's."""

    env_ids: tuple[str, ...] = DEFAULT_ENVS
    num_envs: int | None = param(None, "parallel envs", low=1, high=4096)
    num_steps: int | None = param(None, "steps per env per rollout, T", low=1, high=MAX_BATCH)
    update_epochs: int | None = param(None, "epochs K", low=1, high=10_000)
    num_minibatches: int | None = param(None, "minibatches per epoch", low=1, high=MAX_BATCH)
    rounds: int = param(FULL["rounds"], "rounds per env", low=1, high=10_000)
    iterations: int = param(FULL["iterations"], "iterations per turn", low=1, high=10_000)
    sb3_iterations: int = param(FULL["sb3_iterations"], "iterations per turn of SB3", low=1,
                                high=10_000)
    memory_size: int = param(10, "MCPO's N", low=1, high=1024)
    seed: int = param(1, "seed", low=0, high=SEED_MAX)
    systems: tuple[str, ...] = SYSTEMS
    # None: auto (`sb3_threads_for`)
    sb3_threads: int | None = param(None, "torch threads for SB3 (0: torch's default; None: "
                                    "auto, as many as ours computes with)", low=0, high=1024)
    compile_cache: bool = False
    backend: str = "gymnasium"  # whose vector env ours step (SB3 always steps Gymnasium's)

    def sb3_threads_for(self, network: str) -> int | None:
        """torch threads for SB3 on an env whose network (ours) is `network`; None: torch's
        default (one per core). `--sb3-threads N` pins N (0: torch's default); auto gives SB3
        the threads `mcpo train` gives ours (`mcpo.xla_threads.requested`): one for MLPs, where
        one thread is as fast as two for either library, and every core for the Atari CNN,
        whose convolutions do use them (torch: 216 -> 132 ms per fwd+bwd of a 256-frame
        minibatch here; SB3 on Breakout 203 -> 315 steps/s: benchmarks/RESULTS.md §1.0)."""
        if self.sb3_threads is None:
            return xla_threads.requested(network)
        return self.sb3_threads or None

    @property
    def run_iterations(self) -> int:
        """Iterations of each of our training runs: the first (compile) and the measured."""
        return 1 + self.rounds * self.iterations

    def iterations_of(self, system: str) -> int:
        return self.sb3_iterations if system == "sb3-ppo" else self.iterations

    def size_flags(self) -> dict[str, int]:
        """The size fields given, by name."""
        return {k: getattr(self, k) for k in SIZE_FIELDS if getattr(self, k) is not None}

    def train_config(self, system: str, env_id: str, run_dir: str = "") -> TrainConfig:
        """The config of our runs: what `mcpo train --algo ALGO --env-id ENV_ID` would use (the
        family preset) with the bench's size flags, except no end-of-run evaluation, no
        progress bar, no periodic snapshots (they are spread over a run's length, so a short
        run would pay one every iteration), a budget of exactly the iterations the bench asks
        for, and the bench's seed, backend and MCPO memory size."""
        algo, own = OURS[system]
        batch = make_config(algo, env_id, **self.size_flags()).batch_size
        if algo == "mcpo":
            own = dict(own, memory_size=self.memory_size)
        return make_config(algo, env_id, **self.size_flags(), **own,
                           total_timesteps=self.run_iterations * batch, seed=self.seed,
                           run_dir=run_dir, backend=self.backend, snapshots=0,
                           eval_episodes=0, progress=False)

    def env_setting(self, env_id: str, network: str) -> EnvSetting:
        """`env_id`'s setting, from our PPO run's config; `network`: the network kind."""
        c = self.train_config("ppo", env_id)
        return EnvSetting(env_id, env_family(env_id), c.preset, *_sizes(c), c.hidden_sizes,
                          c.norm_obs, c.norm_reward, network, tuple(self.size_flags()),
                          targets_for(env_id))

    def validate(self) -> None:
        check_fields(self)  # each flag's own range first, so the message names that flag
        if self.backend not in HOST_BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(HOST_BACKENDS)} (the "
                              f"host-side backends); got {self.backend!r}.")
        if not self.env_ids:
            raise ConfigError("--env-ids needs at least one env id.")
        if not self.systems:
            raise ConfigError("--systems needs at least one system.")
        for env_id in self.env_ids:
            self._validate_env(env_id)

    def _validate_env(self, env_id: str) -> None:
        """The run length first (the bench's own message), then the trainer's checks of our
        runs (unknown ids, sizes that do not split), then one batch for every system."""
        ppo, mcpo = (self.train_config(a, env_id) for a in ("ppo", "mcpo"))
        n_iter = self.run_iterations
        updates = n_iter * ppo.update_epochs * ppo.num_minibatches
        if ppo.total_timesteps > MAX_TIMESTEPS or updates > MAX_OPTIMIZER_STEPS:
            raise ConfigError(
                f"--rounds {self.rounds} x --iterations {self.iterations} make training runs "
                f"of {n_iter:,} iterations on {env_id} ({ppo.total_timesteps:.3g} env steps, "
                f"{updates:.3g} optimizer steps), more than a run may take "
                f"({MAX_TIMESTEPS:.0e} steps, {MAX_OPTIMIZER_STEPS:,} optimizer steps).")
        ppo.validate()
        mcpo.validate()
        if _sizes(ppo) != _sizes(mcpo):
            raise ConfigError(
                f"{env_id}: the presets give PPO and MCPO different sizes ({_sizes(ppo)} vs "
                f"{_sizes(mcpo)} as {', '.join(SIZE_FIELDS)}); the bench measures every system "
                f"on one batch per env. Give them as flags.")
