"""Presets: per-family training settings (`training.py`) and how a run's config is made from
them, the algorithm's own defaults and the user's flags (`make_config`).

    make_config("a2c", "Pendulum-v1")            # A2C's own defaults on the classic preset
    make_config("ppo", "HalfCheetah-v5", learning_rate=1e-4)   # the mujoco preset, one override

The config records the preset's name and the fields the user set (`TrainConfig.preset`,
`.overrides`), so config.json says how it was made.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from mcpo.algos import ALGOS
from mcpo.config import TrainConfig
from mcpo.envs import env_family
from mcpo.presets.training import PRESETS, Preset, preset_for_family
from mcpo.types import ConfigError, flag_name

AUTO = "auto"  # the env id's family preset
NONE = "none"  # TrainConfig's defaults and the algorithm's own only

def resolve_preset(name: str, env_id: str) -> Preset | None:
    if name == AUTO:
        return preset_for_family(env_family(env_id))
    if name == NONE:
        return None
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown --preset {name!r}.{hint} Presets: {', '.join(PRESETS)}, "
                          f"'{AUTO}' (the env's family, the default) or '{NONE}'.")
    return PRESETS[name]


def algo_field_owners() -> dict[str, list[str]]:
    """algorithm hyperparameter name -> the algorithms that have it (CLI-visible fields)."""
    owners: dict[str, list[str]] = {}
    for name, spec in ALGOS.items():
        for f in dataclasses.fields(spec.config_cls):
            if f.metadata.get("cli", True):
                owners.setdefault(f.name, []).append(name)
    return owners


def _algo_spec(algo: str):
    if algo not in ALGOS:
        TrainConfig(algo=algo).validate()  # raises, with a close-match suggestion
    return ALGOS[algo]


def layers(algo: str, env_id: str, preset: str = AUTO) -> list[tuple[str, dict[str, Any]]]:
    """The default layers for (algo, env, preset), weakest first: [(source, values)]."""
    spec = _algo_spec(algo)
    p = resolve_preset(preset, env_id)
    out: list[tuple[str, dict[str, Any]]] = []
    if p is not None:
        out.append((f"preset {p.name}", dict(p.shared)))
    out.append((f"{algo} default", dict(spec.defaults)))
    if p is not None and algo in p.per_algo:
        out.append((f"preset {p.name} for {algo}", dict(p.per_algo[algo])))
    return out


def effective_defaults(algo: str, env_id: str, preset: str = AUTO) -> dict[str, tuple[Any, str]]:
    """field -> (value, where it comes from) before the user's flags; fields the layers do not
    set keep their dataclass default ('default')."""
    spec = _algo_spec(algo)
    out: dict[str, tuple[Any, str]] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True):
            out[f.name] = (f.default, "default")
    for f in dataclasses.fields(spec.config_cls):
        if f.metadata.get("cli", True):
            out[f.name] = (f.default, "default")
    for source, values in layers(algo, env_id, preset):
        for k, v in values.items():
            out[k] = (v, source)
    return out


def make_config(algo: str = TrainConfig.algo, env_id: str = TrainConfig.env_id,
                preset: str = AUTO, **given) -> TrainConfig:
    """A TrainConfig for `algo` on `env_id`: the preset (the env's family by default), the
    algorithm's defaults, then `given` (TrainConfig fields and the algorithm's own
    hyperparameters, by their field names). Not validated: call `.validate()`."""
    spec = _algo_spec(algo)
    algo_names = {f.name for f in dataclasses.fields(spec.config_cls)}
    common_names = {f.name for f in dataclasses.fields(TrainConfig)}
    for k in given:
        if k in ("algo", "env_id", "preset", "overrides", "algo_config"):
            raise ConfigError(f"make_config: pass {k!r} as its own argument, not in the "
                              f"overrides.")
        if k not in common_names and k not in algo_names:
            owners = algo_field_owners().get(k)
            if owners:
                raise ConfigError(f"{flag_name(k)} does not apply to --algo {algo}; it is a "
                                  f"hyperparameter of {', '.join(owners)}.")
            close = difflib.get_close_matches(k, sorted(common_names | algo_names), n=1)
            hint = f" Did you mean {flag_name(close[0])}?" if close else ""
            raise ConfigError(f"Unknown setting {flag_name(k)}.{hint}")
    values: dict[str, Any] = {}
    for _, layer in layers(algo, env_id, preset):
        values.update(layer)
    values.update(given)
    p = resolve_preset(preset, env_id)
    common = {k: v for k, v in values.items() if k in common_names}
    algo_values = {k: v for k, v in values.items() if k in algo_names}
    for k in ("hidden_sizes",):
        if isinstance(common.get(k), list):
            common[k] = tuple(common[k])
    try:
        algo_config = spec.config_cls(**algo_values)
    except TypeError as e:
        raise ConfigError(f"--algo {algo}: {e}.") from None
    return TrainConfig(algo=algo, env_id=env_id, preset=p.name if p else "",
                       overrides=tuple(sorted(given)), algo_config=algo_config, **common)


__all__ = ["PRESETS", "Preset", "AUTO", "NONE", "make_config", "effective_defaults",
           "resolve_preset", "algo_field_owners", "layers"]
