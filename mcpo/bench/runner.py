"""Running `mcpo bench`: machine facts, the rounds of turns, and the command line (wired in
mcpo/cli.py as `mcpo bench`)."""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mcpo import xla_threads
from mcpo.bench.report import format_report
from mcpo.bench.results import BenchResult, Build, Sample
from mcpo.bench.sb3 import sb3_unavailable, sb3_unsupported
from mcpo.bench.settings import DEFAULT_ENVS, FULL, HOST_BACKENDS, QUICK, SYSTEMS, EnvSetting, \
    Settings
from mcpo.bench.systems import BUILD
from mcpo.config import TrainConfig
from mcpo.envs import check_env_id, env_network_kind
from mcpo.presets import PRESETS
from mcpo.trainer import prepare_jax
from mcpo.types import EXIT_BAD_INPUT, ConfigError, parse_int

def probe_env(s: Settings, env_id: str) -> EnvSetting:
    """`env_id`'s setting, after making the env once (its observation space gives the network
    kind). ConfigError when it cannot be made here (a missing optional dependency) or on
    `s.backend` (an id the backend lacks)."""
    kind = env_network_kind(env_id)
    check_env_id(env_id, s.backend)
    return s.env_setting(env_id, kind)


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    usable = xla_threads.usable_cores()
    versions = {}
    for pkg in ("mcpo", "jax", "jaxlib", "optax", "numpy", "gymnasium", "mujoco", "envpool",
                "torch", "stable-baselines3"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "usable_cpus": usable,
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions, "loadavg_start": _loadavg()}


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run(s: Settings, *, log=None) -> BenchResult:
    """Run the benchmark; `log` gets one progress line per build and per round."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    s.validate()
    notes = []
    envs = {}
    for env_id in s.env_ids:
        try:
            envs[env_id] = probe_env(s, env_id)
        except ConfigError as e:
            notes.append(f"{env_id} skipped: {e}")
    systems = list(s.systems)
    if "sb3-ppo" in systems:
        why = sb3_unavailable()
        if why:
            notes.append(f"sb3-ppo skipped: {why}.")
            systems.remove("sb3-ppo")
    # As mcpo.train does (the bench builds its Trainer itself); without the compile cache our
    # runs compile cold, so the compile figures are a first run's.
    prepare_jax(compile_cache=s.compile_cache)
    # One process for every env: XLA's threads as `mcpo train` would choose them if all the
    # envs agree (mcpo.xla_threads), else XLA's default.
    wanted = {xla_threads.requested(e.network) for e in envs.values()}
    threads = wanted.pop() if len(wanted) == 1 else None
    applied = xla_threads.limit(threads)
    notes.append(f"XLA computed with {threads} thread(s) (${xla_threads.ENV}; mcpo.xla_threads)."
                 if applied else "XLA computed with its default threads (all CPUs).")
    res = BenchResult(s, machine_info(), [], [], notes,
                      _dt.datetime.now().astimezone().isoformat(timespec="seconds"), envs=envs)
    t_start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="mcpo-bench-"))
    try:
        for env_id in envs:
            _bench_env(s, env_id, _systems_on(env_id, systems, notes), workdir, res, log)
    except KeyboardInterrupt:
        res.complete = False
        notes.append("Interrupted: the tables hold the measurements finished before the stop.")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        res.seconds = time.perf_counter() - t_start
        res.machine["loadavg_end"] = _loadavg()
    sb3_envs = [b.env_id for b in res.builds if b.system == "sb3-ppo"]
    if sb3_envs:
        threads = ", ".join(f"{e} {s.sb3_threads_for(res.envs[e].network) or 'default'}"
                            for e in sb3_envs)
        notes.append(f"SB3's torch threads ('default': torch's, one per core): {threads} "
                     f"(--sb3-threads {'auto' if s.sb3_threads is None else s.sb3_threads}).")
    return res


def _systems_on(env_id: str, systems: list[str], notes: list[str]) -> list[str]:
    """The systems measured on `env_id`: SB3 only on the families it has a setting for."""
    why = sb3_unsupported(env_id) if "sb3-ppo" in systems else None
    if why:
        notes.append(f"sb3-ppo skipped on {env_id}: {why}.")
        return [x for x in systems if x != "sb3-ppo"]
    return systems


def _bench_env(s: Settings, env_id: str, systems: list[str], workdir: Path, res: BenchResult,
               log) -> None:
    built: dict = {}
    try:
        for name in systems:
            t0 = time.perf_counter()
            built[name] = BUILD[name](s, env_id, workdir)
            setup = time.perf_counter() - t0
            ((first, ro, up),) = built[name].iterate(1)
            res.builds.append(Build(name, env_id, built[name].steps_per_iteration, setup, first,
                                    ro, up))
            log(f"{env_id:<18} {name:<8} built in {setup:.2f} s, first iteration {first:.2f} s")
        for rnd in range(s.rounds):
            k = rnd % len(systems)
            line = []
            for name in systems[k:] + systems[:k]:
                its = built[name].iterate(s.iterations_of(name))
                x = Sample(name, env_id, rnd, built[name].steps_per_iteration,
                           *map(list, zip(*its)))
                res.samples.append(x)
                line.append(f"{name} {x.sps:,.0f}")
            log(f"{env_id:<18} round {rnd + 1}/{s.rounds}: " + ", ".join(line) + " steps/s")
    finally:
        for system in built.values():
            system.close()


def _threads(s: str) -> int | None:
    return None if s.strip().lower() == "auto" else _int(s)


def _int(s: str) -> int:
    try:
        return parse_int(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_INT = _int


def _preset_default(name: str) -> str:
    """'(default: the env's family preset: classic 1, ...)' for a size flag, from the presets."""
    values = ", ".join(f"{p.name} {p.shared.get(name, getattr(TrainConfig, name))}"
                       for p in PRESETS.values())
    return f"(default: the env's family preset: {values})"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = (
        "Steps per second, side by side in one process, of: the bare vector env (random "
        "actions), our rollout alone, our PPO and MCPO training, and stable-baselines3 PPO when "
        "installed. Each env runs with its family's training preset (what `mcpo train --env-id "
        "ENV` uses: sizes, networks, normalization), SB3 set up the same way; the size flags "
        "below override it for every env. The systems take turns, "
        "round after round; the report gives median [min-max] over rounds, ratios paired "
        "within a round, the targets of docs/design.md §7 and where the time goes. Method: "
        "mcpo/bench/; recorded results: benchmarks/RESULTS.md.")
    p.epilog = ("examples:\n"
                "  mcpo bench                          # the recorded setting, ~4-6 min\n"
                "  mcpo bench --quick                  # ~1 min smoke\n"
                "  mcpo bench --env-ids Pendulum-v1 HalfCheetah-v5 BipedalWalker-v3 \\\n"
                "      MiniGrid-Unlock-v0 ALE/Breakout-v5   # one env per family, ~35 min\n"
                "  mcpo bench --env-ids Pendulum-v1 --num-envs 8 --num-steps 256 --json b.json")
    p.add_argument("--env-ids", nargs="+", default=list(DEFAULT_ENVS), metavar="ENV",
                   help="Gymnasium env ids; one whose optional dependency is missing is "
                   "skipped with a note (default: %(default)s)")
    p.add_argument("--num-envs", type=_INT, default=None,
                   help="parallel envs " + _preset_default("num_envs"))
    p.add_argument("--num-steps", type=_INT, default=None,
                   help="steps per env per rollout, T " + _preset_default("num_steps"))
    p.add_argument("--update-epochs", type=_INT, default=None,
                   help="epochs K " + _preset_default("update_epochs"))
    p.add_argument("--num-minibatches", type=_INT, default=None,
                   help="minibatches per epoch " + _preset_default("num_minibatches"))
    p.add_argument("--memory-size", type=_INT, default=10, help="MCPO's N (default: 10)")
    p.add_argument("--rounds", type=_INT, default=None,
                   help=f"rounds per env; in each, every system takes its turn (default: "
                   f"{FULL['rounds']}; --quick: {QUICK['rounds']})")
    p.add_argument("--iterations", type=_INT, default=None,
                   help=f"iterations per turn of env, rollout, ppo and mcpo (default: "
                   f"{FULL['iterations']}; --quick: {QUICK['iterations']})")
    p.add_argument("--sb3-iterations", type=_INT, default=None,
                   help=f"iterations per turn of SB3 (default: {FULL['sb3_iterations']}; "
                   f"--quick: {QUICK['sb3_iterations']})")
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS),
                   help="what to measure (default: all)")
    p.add_argument("--backend", choices=HOST_BACKENDS, default="gymnasium",
                   help="whose vector env our env/rollout/ppo/mcpo systems step: Gymnasium's "
                   "(default) or envpool's (pip install 'mcpo[envpool]'); SB3 always steps "
                   "Gymnasium's")
    p.add_argument("--seed", type=_INT, default=1, help="seed (default: 1)")
    p.add_argument("--sb3-threads", type=_threads, default=None, metavar="N|auto",
                   help="torch threads for SB3; 0 keeps torch's default, one per core "
                   "(default: auto, the threads ours computes with: 1 for MLP networks, "
                   "every core for the Atari CNN)")
    p.add_argument("--compile-cache", action="store_true",
                   help="let our trainers use the persistent XLA compile cache (default: "
                   "compile cold, so the first-iteration figures are a first run's)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run (~1 minute on the default envs): {QUICK['rounds']} rounds "
                   f"of {QUICK['iterations']} iteration ({QUICK['sb3_iterations']} for SB3); "
                   f"explicit flags win")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write settings, machine, every measurement and the summary as "
                   "JSON to FILE")


def settings_from_args(ns: argparse.Namespace) -> Settings:
    base = QUICK if ns.quick else FULL

    def pick(name):
        return base[name] if getattr(ns, name) is None else getattr(ns, name)

    return Settings(env_ids=tuple(dict.fromkeys(ns.env_ids)), num_envs=ns.num_envs,
                    num_steps=ns.num_steps, update_epochs=ns.update_epochs,
                    num_minibatches=ns.num_minibatches, rounds=pick("rounds"),
                    iterations=pick("iterations"), sb3_iterations=pick("sb3_iterations"),
                    memory_size=ns.memory_size, seed=ns.seed,
                    systems=tuple(x for x in SYSTEMS if x in ns.systems),  # canonical order
                    sb3_threads=ns.sb3_threads, compile_cache=ns.compile_cache,
                    backend=ns.backend)


def run_from_args(ns: argparse.Namespace) -> int:
    try:
        s = settings_from_args(ns)
        s.validate()
        if ns.json and (Path(ns.json).is_dir() or not Path(ns.json).parent.is_dir()):
            raise ConfigError(f"--json {ns.json}: not a file path that can be written (a "
                              f"directory, or its directory does not exist).")
    except ConfigError as e:
        print(f"mcpo: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    res = run(s)
    print(format_report(res))
    if ns.json:
        Path(ns.json).write_text(res.to_json())
        print(f"\nJSON written to {ns.json}")
    return 0 if res.complete else 130
