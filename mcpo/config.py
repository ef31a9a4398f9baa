"""Dataclass configs and their validation.

`TrainConfig` holds what every algorithm shares (the harness: env, rollout, optimizer, logging,
checkpoints); each algorithm module defines its own small config dataclass (e.g.
`mcpo.algos.mcpo.MCPOConfig`), stored in `TrainConfig.algo_config`.

Every field is declared with `param(...)`: its help text becomes the CLI `--help`, its bounds are
checked by `validate()` before any work starts, so bad input fails with one clear paragraph and
nothing on disk is touched (DESIGN.md §8).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Bad user input: raised before any work starts, message meant for the user."""


def param(default: Any, help: str, *, low: float | None = None, high: float | None = None,
          low_open: bool = False, high_open: bool = False, choices: tuple | None = None,
          cli: bool = True):
    """A dataclass field with help text and bounds (closed unless `*_open`)."""
    meta = dict(help=help, low=low, high=high, low_open=low_open, high_open=high_open,
                choices=choices, cli=cli)
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_fields(obj: Any) -> None:
    """Check each field of a `param`-declared dataclass against its bounds and choices."""
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if not meta:
            continue
        value = getattr(obj, f.name)
        where = flag_name(f.name)
        if meta.get("choices") is not None:
            choices = meta["choices"]
            if value not in choices:
                close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}; "
                                  f"got {value!r}.{hint}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number; got {value!r}.")
        lo, hi = meta.get("low"), meta.get("high")
        if lo is not None and (value < lo or (meta["low_open"] and value == lo)):
            op = ">" if meta["low_open"] else ">="
            raise ConfigError(f"{where} must be {op} {lo}; got {value!r}.")
        if hi is not None and (value > hi or (meta["high_open"] and value == hi)):
            op = "<" if meta["high_open"] else "<="
            raise ConfigError(f"{where} must be {op} {hi}; got {value!r}.")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; `config.json` in the run directory is this, serialized."""

    algo: str = param("mcpo", "Algorithm to train (the list is at the top of `mcpo train --help`).")
    env_id: str = param("Pendulum-v1", "Gymnasium environment id.")
    total_timesteps: int = param(200_000, "Environment steps to train for (summed over envs).",
                                 low=1)
    seed: int = param(1, "Seed for networks, sampling and environments.", low=0)
    num_envs: int = param(1, "Number of parallel environments.", low=1)
    num_steps: int = param(2048, "Steps per environment per rollout (T).", low=1)
    update_epochs: int = param(10, "Epochs over each rollout batch (K).", low=1)
    num_minibatches: int = param(32, "Minibatches per epoch.", low=1)
    learning_rate: float = param(3e-4, "Adam learning rate.", low=0.0, low_open=True)
    anneal_lr: bool = param(True, "Decay the learning rate linearly to 0 over training.")
    adam_eps: float = param(1e-5, "Adam epsilon.", low=0.0, low_open=True)
    gamma: float = param(0.99, "Discount factor.", low=0.0, high=1.0)
    gae_lambda: float = param(0.95, "GAE lambda.", low=0.0, high=1.0)
    norm_adv: bool = param(True, "Normalize advantages per minibatch.")
    max_grad_norm: float = param(0.5, "Global gradient-norm clip.", low=0.0, low_open=True)
    vf_coef: float = param(0.5, "Value-loss coefficient.", low=0.0)
    ent_coef: float = param(0.0, "Entropy-bonus coefficient.", low=0.0)
    hidden_sizes: tuple[int, ...] = param((64, 64), "Hidden layer sizes of actor and critic MLPs.")
    norm_obs: bool = param(True, "Normalize observations with running mean/var (frozen in eval).")
    norm_reward: bool = param(True, "Scale rewards by the running std of the discounted return.")
    clip_obs: float = param(10.0, "Clip normalized observations to [-c, c].", low=0.0,
                            low_open=True)
    clip_reward: float = param(10.0, "Clip scaled rewards to [-c, c].", low=0.0, low_open=True)
    vec_env: str = param("sync", "Vector env: 'sync' (in-process, fastest for cheap envs) or "
                         "'async' (one subprocess per env).", choices=("sync", "async"))
    run_dir: str = param("", "Run directory; empty means runs/<env>__<algo>__<seed>__<time>.")
    checkpoint_every: int = param(10, "Write the latest checkpoint every this many iterations.",
                                  low=1)
    snapshots: int = param(10, "Also keep this many evenly spaced checkpoints over the run "
                           "(checkpoints/step_<n>.ckpt; 0: only the latest).", low=0)
    eval_episodes: int = param(10, "Deterministic evaluation episodes at the end (0: none).",
                               low=0)
    tensorboard: bool = param(True, "Write TensorBoard events.")
    progress: bool = param(True, "Show a progress bar.")
    algo_config: Any = field(default=None, metadata=dict(cli=False))

    def __post_init__(self):
        from mcpo.algos import ALGOS  # late import: algos import this module

        spec = ALGOS.get(self.algo)
        if spec is None:
            return  # reported by validate()
        if self.algo_config is None:
            object.__setattr__(self, "algo_config", spec.config_cls())
        elif isinstance(self.algo_config, dict):
            object.__setattr__(self, "algo_config", config_from_dict(spec.config_cls,
                                                                     self.algo_config))
        if isinstance(self.hidden_sizes, list):
            object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))

    # Derived sizes -------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size

    # Validation -----------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        from mcpo.algos import ALGOS

        if self.algo not in ALGOS:
            close = difflib.get_close_matches(self.algo, list(ALGOS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown algorithm {self.algo!r}.{hint} "
                              f"Known algorithms: {', '.join(ALGOS)}.")
        check_fields(self)
        if not self.hidden_sizes or any((not isinstance(h, int)) or h < 1
                                        for h in self.hidden_sizes):
            raise ConfigError(f"--hidden-sizes must be positive integers; got "
                              f"{self.hidden_sizes!r}.")
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
        spec = ALGOS[self.algo]
        if not isinstance(self.algo_config, spec.config_cls):
            raise ConfigError(f"algo_config for {self.algo!r} must be a "
                              f"{spec.config_cls.__name__}; got {type(self.algo_config).__name__}.")
        check_fields(self.algo_config)
        extra = getattr(self.algo_config, "validate", None)
        if extra is not None:
            extra(self)
        from mcpo.envs import check_env_id

        check_env_id(self.env_id)
        return self

    # Serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hidden_sizes"] = list(self.hidden_sizes)
        d["algo_config"] = dataclasses.asdict(self.algo_config) if self.algo_config else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return config_from_dict(cls, d)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def config_from_dict(cls, d: dict):
    """Build a config dataclass from a dict, refusing unknown keys with a clear error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"Unknown {cls.__name__} field(s): {', '.join(unknown)}.")
    kwargs = dict(d)
    for f in dataclasses.fields(cls):
        if f.name in kwargs and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return cls(**kwargs)
