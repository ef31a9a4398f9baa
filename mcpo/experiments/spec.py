"""Sweep specs: which runs an experiment is made of, read from YAML and checked before anything
starts.

A spec (the presets in mcpo/presets/experiments/ are examples):

    name: table1                    # the sweep's name (W&B group, report title)
    description: ...
    seeds: [1, 2, 3, 4, 5]          # or a count: 5 means 1..5
    preset: auto                    # training preset (mcpo train --preset), default auto
    imports: [my_package.envs]      # modules to import first (custom Gymnasium envs)
    flags:                          # training flags of every run
      total_timesteps: 1e6
    grid:                           # every combination of these values, for every run
      learning_rate: [3e-4, 1e-4]
    envs:                           # a list of env ids, or env id -> its own flags / grid
      Pendulum-v1: {total_timesteps: 1_000_000}
      BipedalWalker-v3:
        total_timesteps: 5e6
    methods:                        # label -> algorithm, its flags and its grid
      PPO:
        algo: ppo
        grid: {clip_coef: [0.1, 0.2, 0.3]}
      MCPO:
        algo: mcpo
        envs: [Pendulum-v1]         # only on these envs (default: all)
        seeds: 10                   # its own seeds (default: the spec's)
        update_epochs: 10           # any other key is a training flag of this method
        grid: {memory_size: [5, 10, 40]}

Flags are `mcpo train` flags by their field names (`clip_coef` or `clip-coef`), typed as the
config field is (`1e6` is an integer for an integer field). A flag set at several levels takes
the most specific one: method over env over the top level; a grid axis is a flag too. The runs
are every (seed, env, method, combination of the grid axes); the order is seeds first, so the
first results cover every method.

Each run's directory is named from its (env, algo, grid values, seed) and a hash of everything
the spec sets for it (algo, env, preset, seed and every flag), so the same spec always names
the same directories and a changed flag never reuses an old run's directory.

Everything is checked here, before a sweep starts: unknown keys, unknown or foreign flags,
values of the wrong type or out of bounds (each run's config is built with
`mcpo.presets.make_config` and validated), empty grids, duplicate runs; the error names the
line of the spec.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpo.algos import ALGOS
from mcpo.config import TrainConfig
from mcpo.envs import check_env_id
from mcpo.presets import AUTO, make_config, resolve_preset
from mcpo.presets import experiments as experiment_presets
from mcpo.types import SEED_MAX, ConfigError, flag_name, parse_float, parse_int

TOP_KEYS = ("name", "description", "seeds", "preset", "imports", "flags", "grid", "envs",
            "methods")
METHOD_KEYS = ("algo", "preset", "envs", "seeds", "grid")  # + training flags
ENV_KEYS = ("grid",)                               # + training flags
# Config fields a spec may not set, and where they come from instead.
RESERVED = {"algo": "the method's `algo:`", "env_id": "`envs:`", "seed": "`seeds:`",
            "run_dir": "the sweep (--out DIR/<run name>)",
            "progress": "the sweep (it shows its own progress)",
            "preset": "`preset:` (top level or per method)",
            "overrides": "mcpo (it records the flags a run sets)",
            "algo_config": "the method's flags"}
MAX_NAME = 200  # run directory names stay well below the usual 255-byte limit


# ----------------------------------------------------------------------------------------------
# YAML with line numbers
# ----------------------------------------------------------------------------------------------
class LMap(dict):
    """A YAML mapping that remembers the line of itself and of each key (1-based)."""
    line = 1

    def __init__(self):
        super().__init__()
        self.lines: dict[Any, int] = {}


class LList(list):
    """A YAML sequence that remembers the line of itself and of each item (1-based)."""
    line = 1

    def __init__(self):
        super().__init__()
        self.lines: list[int] = []


def load_yaml(text: str, source: str):
    """Parse YAML into plain values whose mappings and lists carry line numbers. Duplicate
    keys are refused (YAML itself would silently keep the last)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        loader.flatten_mapping(node)
        out = LMap()
        out.line = node.start_mark.line + 1
        for k_node, v_node in node.value:
            key = loader.construct_object(k_node, deep=True)
            line = k_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError(f"{source}, line {line}: keys must be names (text); got "
                                  f"{key!r}.")
            if key in out:
                raise ConfigError(f"{source}, line {line}: {key!r} is given twice (first on "
                                  f"line {out.lines[key]}).")
            out[key] = loader.construct_object(v_node, deep=True)
            out.lines[key] = line
        return out

    def sequence(loader, node):
        out = LList()
        out.line = node.start_mark.line + 1
        for item in node.value:
            out.append(loader.construct_object(item, deep=True))
            out.lines.append(item.start_mark.line + 1)
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        ctx = ""
        if e.context_mark is not None and mark is not None and \
                e.context_mark.line != mark.line:
            ctx = f"; {e.context} on line {e.context_mark.line + 1}"
        raise ConfigError(f"{source}{where}: not valid YAML ({e.problem or e}{ctx}).") \
            from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({e}).") from None


# ----------------------------------------------------------------------------------------------
# The parsed spec
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One run of a sweep: its directory name, where it comes from, and its config."""
    name: str                 # directory name under the sweep's --out
    label: str                # the method's label in the spec
    setting: str              # label + grid values, e.g. "PPO (clip_coef=0.3)": a table row
    algo: str
    env_id: str
    seed: int
    preset: str
    flags: dict               # every flag the spec sets for the run (field name -> value)
    grid: dict                # the grid axes' values of this run
    line: int                 # the method's line in the spec
    config: TrainConfig       # validated, run_dir = <out>/<name>, progress off

    @property
    def total_timesteps(self) -> int:
        return self.config.total_timesteps

    def train_command(self) -> list[str]:
        """The `mcpo train` command that makes this run alone (for provenance)."""
        cmd = ["mcpo", "train", "--algo", self.algo, "--env-id", self.env_id]
        if self.preset != AUTO:
            cmd += ["--preset", self.preset]
        cmd += ["--seed", str(self.seed)]
        for k, v in sorted(self.flags.items()):
            if isinstance(v, bool):
                cmd.append(flag_name(k) if v else "--no-" + k.replace("_", "-"))
            elif isinstance(v, tuple):
                cmd += [flag_name(k), *map(str, v)]
            else:
                cmd += [flag_name(k), str(v)]
        return cmd + ["--run-dir", self.config.run_dir, "--no-progress"]

    def describe(self) -> dict:
        """JSON-able summary for sweep.json and the report."""
        return {"label": self.label, "setting": self.setting, "algo": self.algo,
                "env_id": self.env_id, "seed": self.seed, "preset": self.preset,
                "flags": {k: list(v) if isinstance(v, tuple) else v
                          for k, v in self.flags.items()},
                "grid": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in self.grid.items()},
                "total_timesteps": self.total_timesteps, "command": self.train_command()}


@dataclass
class Spec:
    name: str
    description: str
    source: str               # file path or "preset NAME"
    runs: list[Run]
    imports: tuple[str, ...] = ()
    env_problems: dict[str, str] = field(default_factory=dict)  # env id -> why it cannot run

    @property
    def total_timesteps(self) -> int:
        return sum(r.total_timesteps for r in self.runs)


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
@dataclass
class _Def:
    """A flag's value (or a grid axis's values) at one level of the spec."""
    value: Any
    line: int
    grid: bool = False


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}


_COMMON = _fields(TrainConfig)


def _norm(name: str) -> str:
    return name.lstrip("-").replace("-", "_")


class _Parser:
    def __init__(self, source: str):
        self.source = source

    def err(self, line: int, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}, line {line}: {msg}")

    # values --------------------------------------------------------------------------------
    def coerce(self, name: str, f: dataclasses.Field, value, line: int):
        """A spec value as the config field's type (YAML reads 1e6 as text, 3 as an integer)."""
        t = str(f.type)
        where = f"{name}: {value!r}"
        try:
            if t == "bool":
                if isinstance(value, bool):
                    return value
                raise ValueError("expected true or false")
            if isinstance(value, bool):
                raise ValueError(f"expected {'an integer' if t == 'int' else 'a ' + t}")
            if t == "int":
                if isinstance(value, float) and value.is_integer():
                    return int(value)
                return value if isinstance(value, int) else parse_int(str(value))
            if t == "float":
                return float(value) if isinstance(value, (int, float)) else \
                    parse_float(str(value))
            if t == "str":
                if isinstance(value, (str, int, float)):
                    return str(value)
                raise ValueError("expected text")
            if t.startswith("tuple"):
                items = value if isinstance(value, list) else [value]
                out = []
                for v in items:
                    if isinstance(v, bool) or isinstance(v, (list, dict)):
                        raise ValueError("expected a list of integers")
                    out.append(v if isinstance(v, int) else parse_int(str(v)))
                return tuple(out)
        except ValueError as e:
            raise self.err(line, f"{where}: {e} ({f.metadata.get('help', '')})") from None
        return value

    def check_flag(self, raw: str, line: int, algos: list[str], level: str) -> tuple[str, Any]:
        """The field name and dataclass field of flag `raw` for every algorithm in `algos`."""
        name = _norm(raw)
        if name in RESERVED:
            raise self.err(line, f"{raw!r} cannot be set as a flag here: it comes from "
                                 f"{RESERVED[name]}.")
        if name in _COMMON:
            return name, _COMMON[name]
        owners = [a for a, s in ALGOS.items() if name in _fields(s.config_cls)]
        if not owners:
            known = sorted(set(_COMMON) | {n for s in ALGOS.values()
                                           for n in _fields(s.config_cls)})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise self.err(line, f"unknown flag {raw!r}.{hint} Flags are `mcpo train` "
                                 f"settings by their names (`mcpo train --help`).")
        missing = [a for a in algos if a not in owners]
        if missing:
            raise self.err(line, f"{raw!r} {level} is not a setting of "
                                 f"{', '.join(missing)} (it is one of "
                                 f"{', '.join(owners)}); set algorithm settings under the "
                                 f"methods that have them.")
        return name, _fields(ALGOS[algos[0]].config_cls)[name]

    def level(self, m: LMap, skip: tuple[str, ...], algos: list[str], level: str,
              grid_key: str | None = "grid", flags: LMap | None = None) -> dict[str, _Def]:
        """The flag and grid definitions of one level of the spec."""
        out: dict[str, _Def] = {}
        items = [(k, m[k], m.lines[k]) for k in m if k not in skip and k != grid_key] \
            if flags is None else [(k, flags[k], flags.lines[k]) for k in flags]
        for raw, value, line in items:
            name, f = self.check_flag(raw, line, algos, level)
            if name in out:
                raise self.err(line, f"{raw!r} is set twice at this level (also line "
                                     f"{out[name].line}).")
            if isinstance(value, dict):
                raise self.err(line, f"{raw!r}: a flag's value cannot be a mapping.")
            if isinstance(value, list) and not str(f.type).startswith("tuple"):
                raise self.err(line, f"{raw!r}: a list of values is a grid: put it under "
                                     f"`grid:`.")
            out[name] = _Def(self.coerce(raw, f, value, line), line)
        g = m.get(grid_key) if grid_key else None
        if g is not None:
            gline = m.lines[grid_key]
            if not isinstance(g, LMap):
                raise self.err(gline, "`grid:` must map flags to lists of values.")
            if not g:
                raise self.err(gline, "`grid:` is empty.")
            for raw, values in g.items():
                line = g.lines[raw]
                name, f = self.check_flag(raw, line, algos, level)
                if name in out:
                    raise self.err(line, f"{raw!r} is both a flag (line {out[name].line}) "
                                         f"and a grid axis at this level.")
                if not isinstance(values, LList):
                    raise self.err(line, f"grid axis {raw!r} must be a list of values; got "
                                         f"{values!r}.")
                if not values:
                    raise self.err(line, f"grid axis {raw!r} is empty: it would make no runs.")
                coerced = [self.coerce(raw, f, v, vl) for v, vl in zip(values, values.lines)]
                for i, v in enumerate(coerced):
                    if v in coerced[:i]:
                        raise self.err(values.lines[i], f"grid axis {raw!r} lists {v!r} "
                                                        f"twice: the runs would be duplicates.")
                out[name] = _Def(list(zip(coerced, values.lines)), line, grid=True)
        return out

    # structure -----------------------------------------------------------------------------
    def mapping(self, parent: LMap, key: str, what: str) -> LMap:
        v = parent[key]
        if not isinstance(v, LMap):
            raise self.err(parent.lines[key], f"`{key}:` must be a mapping ({what}).")
        return v

    def unknown_keys(self, m: LMap, allowed: tuple[str, ...], what: str) -> None:
        for k in m:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise self.err(m.lines[k], f"unknown key {k!r} in {what}.{hint} Allowed: "
                                           f"{', '.join(allowed)}.")

    def seeds(self, top: LMap) -> list[tuple[int, int]]:
        if "seeds" not in top:
            return [(1, 1)]
        v, line = top["seeds"], top.lines["seeds"]
        if isinstance(v, int) and not isinstance(v, bool):
            if not 1 <= v <= 10_000:
                raise self.err(line, f"seeds: {v} must be a count from 1 to 10000 or a list.")
            return [(s, line) for s in range(1, v + 1)]
        if not isinstance(v, LList) or not v:
            raise self.err(line, "seeds: must be a non-empty list of integers, or a count.")
        out = []
        for s, sl in zip(v, v.lines):
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX:
                raise self.err(sl, f"seed {s!r} must be an integer from 0 to {SEED_MAX}.")
            if any(s == o for o, _ in out):
                raise self.err(sl, f"seed {s} is listed twice.")
            out.append((s, sl))
        return out

    def text(self, m: LMap, key: str, default: str) -> str:
        if key not in m:
            return default
        v = m[key]
        if not isinstance(v, str) or not v.strip():
            raise self.err(m.lines[key], f"{key}: must be text.")
        return v.strip()


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    return str(v)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", s)


def run_name(env_id: str, algo: str, grid: dict, seed: int, identity: dict) -> str:
    """<env>__<algo>[__<axis>=<value>...]__s<seed>__<hash of everything the spec sets>."""
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=list).encode())
    h = digest.hexdigest()[:8]
    head = f"{_slug(env_id.replace('/', '-'))}__{_slug(algo)}"
    axes = "".join(f"__{_slug(k)}={_slug(_fmt(v))}" for k, v in grid.items())
    tail = f"__s{seed}__{h}"
    if len(head) + len(axes) + len(tail) > MAX_NAME:
        axes = ""  # the hash still tells the runs apart
    return head + axes + tail


def _import_modules(p: _Parser, top: LMap) -> tuple[str, ...]:
    if "imports" not in top:
        return ()
    v, line = top["imports"], top.lines["imports"]
    if not isinstance(v, LList) or not all(isinstance(x, str) for x in v):
        raise p.err(line, "imports: must be a list of module names.")
    for mod, ml in zip(v, v.lines):
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - any import failure is the user's to see
            raise p.err(ml, f"cannot import {mod!r}: {type(e).__name__}: {e}") from None
    return tuple(v)


def parse_spec(text: str, source: str, out: Path | str, *, scale: float = 1.0,
               seeds: list[int] | None = None, envs: list[str] | None = None,
               methods: list[str] | None = None, check_envs: bool = True) -> Spec:
    """Parse and check a spec; every run's config is built and validated. `scale` multiplies
    every run's total_timesteps (at least one rollout batch remains); `seeds`, `envs` and
    `methods` narrow the spec (a sweep over part of it). With `check_envs` False, env ids
    that cannot be made here are collected in `Spec.env_problems` instead of refused
    (for --dry-run on a machine without an env's extra)."""
    p = _Parser(source)
    top = load_yaml(text, source)
    if not isinstance(top, LMap):
        raise p.err(getattr(top, "line", 1), "a spec must be a mapping with `envs:` and "
                                             "`methods:`.")
    p.unknown_keys(top, TOP_KEYS, "the spec")
    for k in ("envs", "methods"):
        if k not in top:
            raise p.err(top.line, f"the spec has no `{k}:`.")
    if not scale > 0 or scale > 1e6:
        raise ConfigError(f"--scale must be a number > 0 (1 is the spec's budget); got "
                          f"{scale!r}.")
    name = p.text(top, "name", Path(source).stem if not source.startswith("preset ")
                  else source.split()[-1])
    description = top.get("description") or ""
    imports = _import_modules(p, top)
    seed_list = p.seeds(top)
    top_preset = p.text(top, "preset", AUTO)

    # envs ----------------------------------------------------------------------------------
    env_v = top["envs"]
    env_items: list[tuple[str, int, LMap | None]] = []
    if isinstance(env_v, LList):
        for e, el in zip(env_v, env_v.lines):
            if not isinstance(e, str):
                raise p.err(el, f"env {e!r} must be a Gymnasium env id.")
            env_items.append((e, el, None))
    elif isinstance(env_v, LMap):
        for e in env_v:
            v = env_v[e]
            if v is not None and not isinstance(v, LMap):
                raise p.err(env_v.lines[e], f"{e}: must map to its flags (or nothing).")
            env_items.append((e, env_v.lines[e], v))
    else:
        raise p.err(top.lines["envs"], "`envs:` must be a list of env ids or a mapping.")
    if not env_items:
        raise p.err(top.lines["envs"], "`envs:` is empty.")
    seen_env: dict[str, int] = {}
    for e, el, _ in env_items:
        if e in seen_env:
            raise p.err(el, f"env {e!r} is listed twice (also line {seen_env[e]}).")
        seen_env[e] = el

    # methods --------------------------------------------------------------------------------
    meths = p.mapping(top, "methods", "label -> algo and flags")
    if not meths:
        raise p.err(top.lines["methods"], "`methods:` is empty.")
    method_items = []
    for label in meths:
        mline = meths.lines[label]
        m = meths[label]
        if not isinstance(m, LMap) or "algo" not in m:
            raise p.err(mline, f"method {label!r} needs `algo:` (one of {', '.join(ALGOS)}).")
        algo = m["algo"]
        if algo not in ALGOS:
            close = difflib.get_close_matches(str(algo), list(ALGOS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise p.err(m.lines["algo"], f"unknown algo {algo!r}.{hint} Known: "
                                         f"{', '.join(ALGOS)}.")
        only = None
        if "envs" in m:
            ov = m["envs"]
            if not isinstance(ov, LList) or not ov:
                raise p.err(m.lines["envs"], f"method {label!r}: `envs:` must be a non-empty "
                                             f"list of the spec's env ids.")
            for e, el in zip(ov, ov.lines):
                if e not in seen_env:
                    raise p.err(el, f"method {label!r}: env {e!r} is not in the spec's "
                                    f"`envs:` ({', '.join(seen_env)}).")
            only = list(ov)
        preset = p.text(m, "preset", top_preset)
        try:
            resolve_preset(preset, "Pendulum-v1")
        except ConfigError as e:
            raise p.err(m.lines.get("preset", top.lines.get("preset", mline)), str(e)) from None
        defs = p.level(m, METHOD_KEYS, [algo], f"(method {label!r})")
        own_seeds = [sd for sd, _ in p.seeds(m)] if "seeds" in m else None
        method_items.append((label, mline, algo, preset, only, defs, own_seeds))

    algos_used = sorted({m[2] for m in method_items})
    top_defs: dict[str, _Def] = {}
    if "flags" in top:
        top_defs.update(p.level(LMap(), (), algos_used, "(top-level flags)", grid_key=None,
                                flags=p.mapping(top, "flags", "flag -> value")))
    if "grid" in top:
        gl = p.level(top, tuple(k for k in top if k != "grid"), algos_used,
                     "(top-level grid)")
        for k, d in gl.items():
            if k in top_defs:
                raise p.err(d.line, f"{k!r} is both a top-level flag (line "
                                    f"{top_defs[k].line}) and a grid axis.")
        top_defs.update(gl)
    env_defs: dict[str, dict[str, _Def]] = {}
    for e, el, em in env_items:
        users = sorted({m[2] for m in method_items if m[4] is None or e in m[4]})
        env_defs[e] = p.level(em, ENV_KEYS, users, f"(env {e})") if em is not None else {}

    # filters ----------------------------------------------------------------------------------
    def narrow(given, available, what):
        if given is None:
            return None
        bad = [g for g in given if g not in available]
        if bad:
            raise ConfigError(f"{what} {', '.join(map(repr, bad))} not in {source} (it has "
                              f"{', '.join(map(str, available))}).")
        return set(given)

    env_pick = narrow(envs, [e for e, _, _ in env_items], "--env")
    method_pick = narrow(methods, [m[0] for m in method_items], "--method")
    if seeds is not None:
        for s in seeds:
            if not 0 <= s <= SEED_MAX:
                raise ConfigError(f"--seeds: {s} must be from 0 to {SEED_MAX}.")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds lists a seed twice: {seeds}.")
        seed_list = [(s, top.lines.get("seeds", top.line)) for s in seeds]
        method_items = [(*m[:6], None) for m in method_items]
    all_seeds = list(dict.fromkeys([s for s, _ in seed_list]
                                   + [s for m in method_items for s in (m[6] or ())]))

    # env ids -------------------------------------------------------------------------------
    env_problems: dict[str, str] = {}

    def backends_for(e) -> list[str]:
        """The env backends the spec sets for env e's runs (top level, the env's own, its
        methods'; a grid axis gives several); Gymnasium when none."""
        levels = [top_defs, env_defs[e]] + [m[5] for m in method_items
                                            if m[4] is None or e in m[4]]
        found = []
        for defs in levels:
            d = defs.get("backend")
            if d is not None:
                found += list(d.value) if d.grid else [d.value]
        return list(dict.fromkeys(found)) or ["gymnasium"]

    for e, el, _ in env_items:
        if env_pick is not None and e not in env_pick:
            continue
        try:
            for backend in backends_for(e):  # the id must exist where a run of it trains
                check_env_id(e, backend)
        except ConfigError as err:
            if check_envs:
                raise p.err(el, str(err)) from None
            env_problems[e] = str(err)

    # runs ----------------------------------------------------------------------------------
    out = Path(out)
    runs: list[Run] = []
    by_name: dict[str, Run] = {}
    spec_seeds = {s for s, _ in seed_list}
    for seed in all_seeds:
        for e, el, _ in env_items:
            if env_pick is not None and e not in env_pick:
                continue
            for label, mline, algo, preset, only, mdefs, own_seeds in method_items:
                if (only is not None and e not in only) or \
                        (method_pick is not None and label not in method_pick) or \
                        seed not in (spec_seeds if own_seeds is None else set(own_seeds)):
                    continue
                merged: dict[str, _Def] = {**top_defs, **env_defs[e], **mdefs}
                axes = [k for k, d in merged.items() if d.grid]
                fixed = {k: d.value for k, d in merged.items() if not d.grid}
                for combo in itertools.product(*(merged[k].value for k in axes)):
                    grid = {k: v for k, (v, _) in zip(axes, combo)}
                    lines = {k: d.line for k, d in merged.items()}
                    lines.update({k: vl for k, (_, vl) in zip(axes, combo)})
                    run = _make_run(p, out, label, mline, algo, e, preset, seed,
                                    {**fixed, **grid}, grid, lines, scale)
                    if run.name in by_name:
                        other = by_name[run.name]
                        raise p.err(mline, f"method {label!r} makes the run {run.name} "
                                           f"(seed {seed}, {e}) a second time: method "
                                           f"{other.label!r} (line {other.line}) already "
                                           f"makes it with the same flags.")
                    by_name[run.name] = run
                    runs.append(run)
    if not runs:
        raise ConfigError(f"{source}: the spec (with the --env/--method/--seeds given) makes "
                          f"no runs.")
    return Spec(name=name, description=" ".join(str(description).split()), source=source,
                runs=runs, imports=imports, env_problems=env_problems)


def _make_run(p: _Parser, out: Path, label: str, mline: int, algo: str, env_id: str,
              preset: str, seed: int, flags: dict, grid: dict, lines: dict,
              scale: float) -> Run:
    def build(fl: dict, name: str) -> TrainConfig:
        cfg = make_config(algo, env_id, preset, **fl, seed=seed, run_dir=str(out / name),
                          progress=False)
        cfg.validate(check_env=False)
        return cfg

    def named(fl: dict) -> str:
        identity = {"algo": algo, "env_id": env_id, "preset": preset, "seed": seed,
                    "flags": fl}
        return run_name(env_id, algo, grid, seed, identity)

    try:
        cfg = build(flags, named(flags))
        if scale != 1.0:
            t = max(int(round(cfg.total_timesteps * scale)), cfg.batch_size)
            flags = {**flags, "total_timesteps": t}
            cfg = build(flags, named(flags))
    except ConfigError as e:
        msg = str(e)
        named_lines = [lines[k] for k in flags if flag_name(k) in msg and k in lines]
        line = named_lines[0] if named_lines else mline
        raise p.err(line, f"method {label!r} on {env_id} (seed {seed}): {msg}") from None
    setting = label + (f" ({', '.join(f'{k}={_fmt(v)}' for k, v in grid.items())})"
                       if grid else "")
    return Run(name=Path(cfg.run_dir).name, label=label, setting=setting, algo=algo,
               env_id=env_id, seed=seed, preset=preset, flags=flags, grid=grid, line=mline,
               config=cfg)


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------
def read_spec_source(path: str | None, preset: str | None) -> tuple[str, str]:
    """(YAML text, source name) of a spec file or of a shipped experiment preset."""
    if (path is None) == (preset is None):
        raise ConfigError("Give a spec file (mcpo sweep SPEC.yaml) or --preset NAME, not "
                          f"{'both' if path else 'neither'}. Presets: "
                          f"{', '.join(experiment_presets.names())}.")
    if preset is not None:
        return experiment_presets.text(preset), f"preset {preset}"
    f = Path(path)
    if not f.is_file():
        raise ConfigError(f"Spec file {f} " + ("is not a file." if f.exists() else
                                               "does not exist."))
    try:
        return f.read_text(), str(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Cannot read the spec file {f}: {e}.") from None
