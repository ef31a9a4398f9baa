"""The training config: `TrainConfig`, its validation and (de)serialization.

`TrainConfig` holds what every algorithm shares (the harness: env, rollout, optimizer, logging,
checkpoints); each algorithm module defines its own small config dataclass (e.g.
`mcpo.algos.mcpo.MCPOConfig`), stored in `TrainConfig.algo_config`.

Every field is declared with `param(...)` (mcpo.types): its help text becomes the CLI `--help`,
its type and bounds are checked by `validate()` before any work starts, so bad input fails with
one clear paragraph and nothing on disk is touched (docs/design.md §8).

Per-algorithm and per-family defaults (A2C's one epoch, Atari's 8 x 128 rollouts, ...) are not
here: `mcpo.presets.make_config` layers them over these base defaults and records which preset
and which user overrides made a config.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mcpo.algos import ALGOS
from mcpo.algos.common import MAX_OPTIMIZER_STEPS, total_optimizer_steps
from mcpo.envs import BACKENDS, check_env_id
from mcpo.types import MAX_TIMESTEPS, SEED_MAX, ConfigError, check_fields, param

EVAL_MODES = ("deterministic", "sampled", "both")
# --eval-mode -> the evaluations it runs (True: deterministic actions, False: sampled)
EVAL_DETERMINISTIC = {"deterministic": (True,), "sampled": (False,), "both": (True, False)}
MAX_BATCH = 2**24  # samples per rollout batch (T x E); beyond this the buffers alone are GBs


class RolloutSizes:
    """The sizes derived from num_envs, num_steps and num_minibatches (TrainConfig and the
    bench's EnvSetting both have these fields)."""
    num_envs: int
    num_steps: int
    num_minibatches: int

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


@dataclass(frozen=True)
class TrainConfig(RolloutSizes):
    """Everything a run needs; `config.json` in the run directory is this, serialized."""

    # Added after the first run-directory format (a config.json without them is complete).
    ADDED_FIELDS: ClassVar[frozenset] = frozenset({"backend", "preset", "overrides",
                                                   "eval_mode"})

    algo: str = param("mcpo", "Algorithm to train (the list is at the top of `mcpo train --help`).")
    env_id: str = param("Pendulum-v1", "Gymnasium environment id.")
    total_timesteps: int = param(200_000, "Environment steps to train for (summed over envs).",
                                 low=1, high=MAX_TIMESTEPS)
    seed: int = param(1, "Seed for networks, sampling and environments.", low=0, high=SEED_MAX)
    num_envs: int = param(1, "Number of parallel environments.", low=1, high=4096)
    num_steps: int = param(2048, "Steps per environment per rollout (T).", low=1, high=MAX_BATCH)
    update_epochs: int = param(10, "Epochs over each rollout batch (K).", low=1, high=10_000)
    num_minibatches: int = param(32, "Minibatches per epoch.", low=1, high=MAX_BATCH)
    learning_rate: float = param(3e-4, "Adam learning rate.", low=0.0, low_open=True, high=1.0)
    anneal_lr: bool = param(True, "Decay the learning rate linearly to 0 over training.")
    adam_eps: float = param(1e-5, "Adam epsilon.", low=0.0, low_open=True, high=1.0)
    gamma: float = param(0.99, "Discount factor.", low=0.0, high=1.0)
    gae_lambda: float = param(0.95, "GAE lambda.", low=0.0, high=1.0)
    norm_adv: bool = param(True, "Normalize advantages per minibatch.")
    max_grad_norm: float = param(0.5, "Global gradient-norm clip.", low=0.0, low_open=True,
                                 high=1e6)
    vf_coef: float = param(0.5, "Value-loss coefficient.", low=0.0, high=1e3)
    ent_coef: float = param(0.0, "Entropy-bonus coefficient.", low=0.0, high=1e3)
    hidden_sizes: tuple[int, ...] = param((64, 64), "Hidden layer sizes of actor and critic MLPs.")
    norm_obs: bool = param(True, "Normalize observations with running mean/var (frozen in eval).")
    norm_reward: bool = param(True, "Scale rewards by the running std of the discounted return.")
    clip_obs: float = param(10.0, "Clip normalized observations to [-c, c].", low=0.0,
                            low_open=True, high=1e6)
    clip_reward: float = param(10.0, "Clip scaled rewards to [-c, c].", low=0.0, low_open=True,
                               high=1e6)
    backend: str = param("gymnasium", "Environment backend: 'gymnasium' (default: Gymnasium "
                         "envs stepped on the host), 'envpool' (envpool's C++ pool, same ids "
                         "and preprocessing, evaluated on the Gymnasium twin; pip install "
                         "'mcpo[envpool]'), 'gymnax' (pure-JAX envs, the whole "
                         "training loop jitted, --seeds vmapped in one process; pip install "
                         "'mcpo[gymnax]') or 'xminigrid' (MiniGrid tasks in pure JAX, ids "
                         "such as MiniGrid-Unlock; pip install 'mcpo[xminigrid]').",
                         choices=BACKENDS)
    vec_env: str = param("sync", "Vector env: 'sync' (in-process, fastest for cheap envs) or "
                         "'async' (one subprocess per env).", choices=("sync", "async"))
    run_dir: str = param("", "Run directory; empty means runs/<env>__<algo>__<seed>__<time>.")
    checkpoint_every: int = param(10, "Write the latest checkpoint every this many iterations.",
                                  low=1, high=10**9)
    snapshots: int = param(10, "Also keep this many evenly spaced checkpoints over the run "
                           "(checkpoints/step_<n>.ckpt; 0: only the latest).", low=0,
                           high=10_000)
    eval_episodes: int = param(10, "Evaluation episodes at the end (0: none).",
                               low=0, high=10**6)
    eval_mode: str = param("deterministic", "End-of-run evaluation: 'deterministic' (mean / "
                           "argmax action), 'sampled' (actions sampled from the policy) or "
                           "'both' (MiniGrid's preset: a greedy policy that has not converged "
                           "can loop forever).", choices=EVAL_MODES)
    tensorboard: bool = param(True, "Write TensorBoard events.")
    progress: bool = param(True, "Show a progress bar.")
    # Provenance, filled by mcpo.presets.make_config: which preset and which fields the user
    # set explicitly (so a run's config says how it was made).
    preset: str = param("", "Training preset applied ('' when none).", cli=False)
    overrides: tuple[str, ...] = param((), "Fields set explicitly over the preset and the "
                                       "algorithm's defaults.", cli=False)
    algo_config: Any = field(default=None, metadata=dict(cli=False))

    def __post_init__(self):
        spec = ALGOS.get(self.algo)
        if isinstance(self.hidden_sizes, list):
            object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if isinstance(self.overrides, list):
            object.__setattr__(self, "overrides", tuple(self.overrides))
        if spec is None:
            return  # reported by validate()
        if self.algo_config is None:
            object.__setattr__(self, "algo_config", spec.config_cls())
        elif isinstance(self.algo_config, dict):
            object.__setattr__(self, "algo_config", config_from_dict(spec.config_cls,
                                                                     self.algo_config))

    # Derived sizes (batch_size, minibatch_size: RolloutSizes) -------------------------------
    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size

    # Validation -----------------------------------------------------------------------------
    def validate(self, check_env: bool = True) -> "TrainConfig":
        """Raise ConfigError (one paragraph naming the flag and what is allowed) for anything
        that would fail later; returns self. `check_env=False` skips the env-id lookup."""
        if not isinstance(self.algo, str) or self.algo not in ALGOS:
            close = difflib.get_close_matches(str(self.algo), list(ALGOS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown algorithm {self.algo!r}.{hint} "
                              f"Known algorithms: {', '.join(ALGOS)}.")
        check_fields(self)
        if (not self.hidden_sizes or len(self.hidden_sizes) > 16
                or any(h < 1 or h > 65536 for h in self.hidden_sizes)):
            raise ConfigError(f"--hidden-sizes must be 1 to 16 integers, each from 1 to 65536; "
                              f"got {' '.join(map(str, self.hidden_sizes)) or 'nothing'}.")
        if self.batch_size > MAX_BATCH:
            raise ConfigError(f"The rollout batch --num-envs {self.num_envs} x --num-steps "
                              f"{self.num_steps} = {self.batch_size:,} samples is larger than "
                              f"the {MAX_BATCH:,} this harness allows.")
        if self.num_minibatches > self.batch_size:
            raise ConfigError(
                f"The minibatch is larger than the batch: --num-minibatches "
                f"{self.num_minibatches} asks for more minibatches than the batch has samples "
                f"(--num-envs {self.num_envs} x --num-steps {self.num_steps} = "
                f"{self.batch_size}).")
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                f"The batch ({self.num_envs} envs x {self.num_steps} steps = {self.batch_size})"
                f" does not split into {self.num_minibatches} equal minibatches; choose "
                f"--num-minibatches dividing {self.batch_size}.")
        if self.total_timesteps < self.batch_size:
            raise ConfigError(
                f"--total-timesteps {self.total_timesteps} is smaller than one rollout batch "
                f"({self.batch_size} = {self.num_envs} envs x {self.num_steps} steps), so no "
                f"update would run.")
        steps = total_optimizer_steps(self)
        if steps > MAX_OPTIMIZER_STEPS:
            most = MAX_OPTIMIZER_STEPS // (self.update_epochs * self.num_minibatches) \
                * self.batch_size
            raise ConfigError(
                f"--total-timesteps {self.total_timesteps:.3g} needs {steps:.3g} optimizer steps "
                f"({self.num_iterations:,} iterations x {self.update_epochs} epochs x "
                f"{self.num_minibatches} minibatches), more than the {MAX_OPTIMIZER_STEPS:,} "
                f"the step counter holds; at most about {most:.3g} timesteps with this batch.")
        spec = ALGOS[self.algo]
        if not isinstance(self.algo_config, spec.config_cls):
            raise ConfigError(f"algo_config for {self.algo!r} must be a "
                              f"{spec.config_cls.__name__}; got {type(self.algo_config).__name__}.")
        check_fields(self.algo_config)
        extra = getattr(self.algo_config, "validate", None)
        if extra is not None:
            extra(self)
        if check_env:
            check_env_id(self.env_id, self.backend)
        return self

    # Serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hidden_sizes"] = list(self.hidden_sizes)
        d["overrides"] = list(self.overrides)
        d["algo_config"] = dataclasses.asdict(self.algo_config) if self.algo_config else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict, strict: bool = False) -> "TrainConfig":
        """Build from a dict; unknown keys are refused. `strict` (a run's config.json) also
        refuses missing keys and checks every value's type and bounds."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a JSON object; got {type(d).__name__}.")
        d = dict(d)
        if strict:
            spec = ALGOS.get(d.get("algo")) if isinstance(d.get("algo"), str) else None
            if spec is None:
                raise ConfigError(f"'algo' is {d.get('algo')!r}, not one of "
                                  f"{', '.join(ALGOS)}.")
            if not isinstance(d.get("algo_config"), dict):
                raise ConfigError("'algo_config' must be an object holding the algorithm's "
                                  "settings.")
            d["algo_config"] = config_from_dict(spec.config_cls, d["algo_config"], strict=True)
        cfg = config_from_dict(cls, d, strict=strict)
        if strict:
            check_fields(cfg)
            check_fields(cfg.algo_config)
        return cfg

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def config_from_dict(cls, d: dict, strict: bool = False):
    """Build a config dataclass from a dict, refusing unknown keys (and, if `strict`, missing
    ones) with a clear error. Fields a class lists in its `ADDED_FIELDS` (added after runs were
    already written with that class) may be missing from a saved config (`strict`): those runs
    used the value the field had when it was added, its default then, which `FORMER_DEFAULTS`
    holds where the default has changed since (a user's partial dict, not `strict`, gets
    today's defaults)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{cls.__name__} settings must be an object; got "
                          f"{type(d).__name__}.")
    fields = [f for f in dataclasses.fields(cls)]
    names = {f.name for f in fields}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"Unknown {cls.__name__} field(s): {', '.join(unknown)}.")
    if strict:
        missing = sorted(names - set(d) - getattr(cls, "ADDED_FIELDS", frozenset()))
        if missing:
            raise ConfigError(f"{cls.__name__} lacks field(s): {', '.join(missing)}.")
    kwargs = dict(d)
    if strict:
        for name, value in getattr(cls, "FORMER_DEFAULTS", {}).items():
            kwargs.setdefault(name, value)
    for f in fields:
        if f.name in kwargs and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    try:
        return cls(**kwargs)
    except TypeError as e:  # a dataclass __post_init__ choking on a wrong type
        raise ConfigError(f"{cls.__name__}: {e}.") from None
