"""Throughput benchmark: `mcpo bench` (DESIGN.md §7; recorded results: benchmarks/RESULTS.md).

Measures steps per second, in one process and side by side, of

  env      the vector env our trainer uses, stepped with uniform random actions: no policy, no
           learning (the physical limit of a CPU environment);
  rollout  the trainer's `Collector` (our policy's action sampling in NumPy, observation and
           reward normalization, episode bookkeeping), no update;
  ppo      our PPO training, the `Trainer` running its own loop as `mcpo train` does;
  mcpo     our MCPO training (N = --memory-size, default 10);
  sb3-ppo  stable-baselines3 PPO with the same sizes, when it is installed (`mcpo[bench]`).

Every system uses the same env ids, num-envs, num-steps, epochs, minibatches and 64x64 tanh
actor and critic. The machine is assumed shared and noisy, so the method is:

* Per env, every system is built once (setup timed) and runs its first iteration (our JIT
  compile; warm-up for the others), which steady-state figures leave out.
* Then `--rounds` rounds: in each, every system runs `--iterations` iterations of
  num-envs x num-steps steps (`--sb3-iterations` for SB3, ~10x slower per iteration), one system
  after the other, in an order that rotates from round to round. Our trainers run in their own
  threads, blocked between turns, so nothing overlaps a measurement.
* A round gives each system's steps/s; ratios are taken within a round (measurements seconds
  apart) and everything is reported as median [min-max] over rounds. Absolute steps/s are only
  meaningful next to the ratios.

Our iterations are timed around the trainer's `_iterate` (wall clock: logging, NaN checks and
checkpoints count), the rollout/update split is the trainer's own (metrics.csv columns).
SB3's iterations are timed from a callback, rollout start to the end of `train()`. By default
SB3 runs with one torch thread (`--sb3-threads`): on a 2-core machine that is its fastest
setting, so ratios against it are conservative (benchmarks/RESULTS.md has the measurement).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import queue
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SYSTEMS = ("env", "rollout", "ppo", "mcpo", "sb3-ppo")
DEFAULT_ENVS = ("Pendulum-v1", "HalfCheetah-v5")
# Per env: (rounds, our iterations per round, SB3 iterations per round). Full: ~4 min with SB3
# on 2 quiet cores; quick: ~1 min.
FULL = dict(rounds=20, iterations=2, sb3_iterations=1)
QUICK = dict(rounds=3, iterations=1, sb3_iterations=1)
TARGETS = (("ppo", 8.0), ("mcpo", 5.0))  # ours / SB3 PPO, DESIGN.md §7
RATIOS = (("ppo", "sb3-ppo"), ("mcpo", "sb3-ppo"), ("ppo", "env"), ("mcpo", "env"),
          ("rollout", "env"), ("sb3-ppo", "env"))
EXIT_BAD_INPUT = 2  # as mcpo.cli
TURN_TIMEOUT = 600.0  # seconds one turn of one system may take before the bench gives up


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
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
        from mcpo.algos.mcpo import MCPOConfig
        from mcpo.config import TrainConfig

        n_iter = 1 + self.rounds * self.iterations
        return TrainConfig(
            algo=algo, env_id=env_id, total_timesteps=n_iter * self.batch_size,
            seed=self.seed, num_envs=self.num_envs, num_steps=self.num_steps,
            update_epochs=self.update_epochs, num_minibatches=self.num_minibatches,
            hidden_sizes=self.hidden_sizes, run_dir=run_dir, snapshots=0, eval_episodes=0,
            progress=False,
            algo_config=MCPOConfig(memory_size=self.memory_size) if algo == "mcpo" else None)

    def validate(self) -> None:
        from mcpo.config import ConfigError

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


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
@dataclass
class Build:
    """A system's setup on one env and its first iteration (JIT compile for ours)."""

    system: str
    env_id: str
    setup_seconds: float
    first_seconds: float
    first_rollout: float = math.nan
    first_update: float = math.nan


@dataclass
class Sample:
    """One system's turn in one round: the wall time of each of its iterations, and the
    rollout/update part of each (update 0 for env and rollout)."""

    system: str
    env_id: str
    round: int
    steps_per_iteration: int
    seconds: list[float]
    rollout: list[float]
    update: list[float]

    @property
    def sps(self) -> float:
        return self.steps_per_iteration * len(self.seconds) / sum(self.seconds)

    @property
    def iteration_mean(self) -> float:
        return statistics.fmean(self.seconds)

    @property
    def rollout_mean(self) -> float:
        return statistics.fmean(self.rollout)

    @property
    def update_mean(self) -> float:
        return statistics.fmean(self.update)

    @property
    def other_mean(self) -> float:
        return self.iteration_mean - self.rollout_mean - self.update_mean

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), sps=self.sps)


# ---------------------------------------------------------------------------------------------
# The systems: build (setup), then `iterate(n)` -> [(wall, rollout, update)] per iteration
# ---------------------------------------------------------------------------------------------
class EnvOnly:
    """The vector env alone, uniform random actions drawn in one call per iteration."""

    def __init__(self, s: "Settings", env_id: str, workdir: Path):
        import numpy as np

        from mcpo.envs import env_seeds, make_vec_env

        self.s = s
        self.vec = make_vec_env(env_id, s.num_envs, "sync")
        self.vec.reset(env_seeds(s.seed, 0, s.num_envs))
        self.rng = np.random.default_rng([s.seed, 7])

    def iterate(self, n: int) -> list[tuple[float, float, float]]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            actions = _random_actions(self.vec.single_action_space, self.rng,
                                      (self.s.num_steps, self.s.num_envs))
            for a in actions:
                self.vec.step(a)
            dt = time.perf_counter() - t
            out.append((dt, dt, 0.0))
        return out

    def close(self) -> None:
        self.vec.close()


def _random_actions(space, rng, prefix: tuple):
    import numpy as np

    if hasattr(space, "low"):
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        return rng.uniform(low, high, prefix + space.shape).astype(space.dtype)
    return (getattr(space, "start", 0) + rng.integers(0, space.n, prefix)).astype(np.int64)


class RolloutOnly:
    """The trainer's Collector with freshly initialized actor weights, no update."""

    def __init__(self, s: "Settings", env_id: str, workdir: Path):
        import jax
        import numpy as np

        from mcpo.envs import make_vec_env
        from mcpo.networks import make_policy
        from mcpo.rollout import Collector

        cfg = s.train_config("ppo", env_id)
        self.np, self.seed, self.it = np, s.seed, 0
        self.vec = make_vec_env(env_id, s.num_envs, "sync")
        policy = make_policy(self.vec.single_observation_space, self.vec.single_action_space,
                             s.hidden_sizes)
        params = jax.jit(policy.init)(jax.random.PRNGKey(s.seed))
        self.actor = jax.tree.map(np.asarray, jax.device_get(params["actor"]))
        self.collector = Collector(self.vec, policy, num_steps=cfg.num_steps, gamma=cfg.gamma,
                                   norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward,
                                   clip_obs=cfg.clip_obs, clip_reward=cfg.clip_reward)
        self.collector.start(s.seed, 0)

    def iterate(self, n: int) -> list[tuple[float, float, float]]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            self.collector.collect(self.actor, self.np.random.default_rng([self.seed, self.it]))
            dt = time.perf_counter() - t
            self.it += 1
            out.append((dt, dt, 0.0))
        return out

    def close(self) -> None:
        self.vec.close()


class Ours:
    """Our Trainer running its own loop (`Trainer.run`) in a thread that waits for its turn
    before each iteration; each iteration is timed around `Trainer._iterate`."""

    def __init__(self, algo: str, s: "Settings", env_id: str, workdir: Path):
        from mcpo.trainer import Trainer

        go: queue.Queue = queue.Queue()
        done: queue.Queue = queue.Queue()
        self.go, self.done = go, done

        class TurnTakingTrainer(Trainer):
            def _iterate(self, bar) -> None:
                if not hasattr(self, "bench_rows"):  # first call: run() has set up
                    self.bench_rows = []
                    log = self.logger.log

                    def log_and_keep(row, step):
                        self.bench_rows.append(row)
                        log(row, step)

                    self.logger.log = log_and_keep
                    done.put(("ready", time.perf_counter()))
                if go.get() == "stop":
                    self._stop_signal = signal.SIGINT
                    from mcpo.rollout import Interrupted

                    raise Interrupted()
                t0 = time.perf_counter()
                super()._iterate(bar)
                t1 = time.perf_counter()
                row = self.bench_rows[-1]
                done.put(("iteration", (t1 - t0, row["rollout_time"], row["update_time"])))

        run_dir = workdir / f"{algo}-{env_id}"
        cfg = s.train_config(algo, env_id, str(run_dir)).validate()
        self.trainer = TurnTakingTrainer(cfg, run_dir)  # envs, networks, jitted init
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.thread = threading.Thread(target=self._run, name=f"bench-{algo}-{env_id}",
                                       daemon=True)
        self.thread.start()
        self._expect("ready")  # run()'s own set-up (logger, env reset) counts as setup

    def _run(self) -> None:
        from mcpo.trainer import TrainingInterrupted

        try:
            self.trainer.run()
        except TrainingInterrupted:
            pass
        except BaseException as e:  # handed to the main thread
            self.done.put(("error", e))
            return
        self.done.put(("finished", None))

    def _expect(self, kind: str):
        deadline = time.monotonic() + TURN_TIMEOUT
        while True:
            try:
                got, value = self.done.get(timeout=0.5)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError(f"{self.thread.name} stopped unexpectedly") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.thread.name}: no answer in {TURN_TIMEOUT} s")
                continue
            if got == "error":
                raise value
            if got != kind:
                raise RuntimeError(f"{self.thread.name}: expected {kind!r}, got {got!r}")
            return value

    def iterate(self, n: int) -> list[tuple[float, float, float]]:
        out = []
        for _ in range(n):
            self.go.put("go")
            out.append(self._expect("iteration"))
        return out

    def close(self) -> None:
        if self.thread.is_alive() and self.trainer.iteration < self.trainer.cfg.num_iterations:
            self.go.put("stop")
        self.thread.join(timeout=60)


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


BUILD = {"env": EnvOnly, "rollout": RolloutOnly,
         "ppo": lambda *a: Ours("ppo", *a), "mcpo": lambda *a: Ours("mcpo", *a),
         "sb3-ppo": SB3}


# ---------------------------------------------------------------------------------------------
# stable-baselines3
# ---------------------------------------------------------------------------------------------
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

    from mcpo.config import TrainConfig

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


# ---------------------------------------------------------------------------------------------
# Running and summarizing
# ---------------------------------------------------------------------------------------------
def env_unavailable(env_id: str) -> str | None:
    """None when the env can be made; else why not (a missing optional dependency)."""
    from mcpo.config import ConfigError
    from mcpo.envs import make_env

    try:
        make_env(env_id).close()
    except ConfigError as e:
        return str(e)
    return None


@dataclass
class BenchResult:
    settings: Settings
    machine: dict
    builds: list[Build]
    samples: list[Sample]
    notes: list[str]
    started: str
    seconds: float = math.nan
    complete: bool = True

    def of(self, system: str, env_id: str) -> list[Sample]:
        return [x for x in self.samples if x.system == system and x.env_id == env_id]

    def build(self, system: str, env_id: str) -> Build | None:
        return next((b for b in self.builds if b.system == system and b.env_id == env_id),
                    None)

    def ratios(self, num: str, den: str, env_id: str) -> list[float]:
        """num / den within each round where both were measured."""
        a = {x.round: x.sps for x in self.of(num, env_id)}
        b = {x.round: x.sps for x in self.of(den, env_id)}
        return [a[r] / b[r] for r in sorted(a) if r in b]

    def summary(self) -> dict:
        out: dict = {"sps": {}, "ratios": {}, "targets": {}, "split": {}, "setup": {}}
        for env_id in self.settings.env_ids:
            for name in self.settings.systems:
                key = f"{name}|{env_id}"
                xs = self.of(name, env_id)
                b = self.build(name, env_id)
                if xs:
                    out["sps"][key] = _stats([x.sps for x in xs])
                    out["split"][key] = {
                        a: statistics.median(getattr(x, a) for x in xs)
                        for a in ("iteration_mean", "rollout_mean", "update_mean",
                                  "other_mean")}
                if b:
                    own = sum(sum(x.seconds) for x in xs)
                    n = 1 + sum(len(x.seconds) for x in xs)
                    out["setup"][key] = dict(
                        setup_s=b.setup_seconds, first_iteration_s=b.first_seconds,
                        steps=n * self.settings.batch_size,
                        sps_with_setup=n * self.settings.batch_size / (
                            b.setup_seconds + b.first_seconds + own))
            for num, den in RATIOS:
                r = self.ratios(num, den, env_id)
                if r:
                    out["ratios"][f"{num}/{den}|{env_id}"] = _stats(r)
            for name, target in TARGETS:
                r = self.ratios(name, "sb3-ppo", env_id)
                if r:
                    med = statistics.median(r)
                    out["targets"][f"{name}|{env_id}"] = dict(
                        target=target, median=med, met=med >= target,
                        rounds_met=sum(x >= target for x in r), rounds=len(r))
        return out

    def to_json(self) -> str:
        return json.dumps({"settings": dataclasses.asdict(self.settings),
                           "machine": self.machine, "started": self.started,
                           "seconds": self.seconds, "complete": self.complete,
                           "notes": self.notes, "summary": self.summary(),
                           "builds": [dataclasses.asdict(b) for b in self.builds],
                           "samples": [x.to_dict() for x in self.samples]},
                          indent=2, default=_json_default)


def _json_default(v):
    return None if isinstance(v, float) and math.isnan(v) else str(v)


def _stats(v: list[float]) -> dict:
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {}
    for pkg in ("mcpo", "jax", "jaxlib", "optax", "numpy", "gymnasium", "mujoco", "torch",
                "stable-baselines3"):
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
    envs = []
    for env_id in s.env_ids:
        why = env_unavailable(env_id)
        if why:
            notes.append(f"{env_id} skipped: {why}")
        else:
            envs.append(env_id)
    systems = list(s.systems)
    if "sb3-ppo" in systems:
        why = sb3_unavailable()
        if why:
            notes.append(f"sb3-ppo skipped: {why}.")
            systems.remove("sb3-ppo")
    if s.compile_cache:
        # Otherwise our runs compile cold (mcpo.train would enable the persistent XLA cache;
        # the bench builds its Trainer itself), so the compile figures are a first run's.
        from mcpo.trainer import enable_compile_cache

        enable_compile_cache()
    res = BenchResult(s, machine_info(), [], [], notes,
                      _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    t_start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="mcpo-bench-"))
    try:
        for env_id in envs:
            _bench_env(s, env_id, systems, workdir, res, log)
    except KeyboardInterrupt:
        res.complete = False
        notes.append("Interrupted: the tables hold the measurements finished before the stop.")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        res.seconds = time.perf_counter() - t_start
        res.machine["loadavg_end"] = _loadavg()
    if s.sb3_threads and "sb3-ppo" in systems:
        notes.append(f"SB3 ran with torch.set_num_threads({s.sb3_threads}) "
                     f"(--sb3-threads; 0 keeps torch's default).")
    return res


def _bench_env(s: Settings, env_id: str, systems: list[str], workdir: Path, res: BenchResult,
               log) -> None:
    built: dict = {}
    try:
        for name in systems:
            t0 = time.perf_counter()
            built[name] = BUILD[name](s, env_id, workdir)
            setup = time.perf_counter() - t0
            ((first, ro, up),) = built[name].iterate(1)
            res.builds.append(Build(name, env_id, setup, first, ro, up))
            log(f"{env_id:<16} {name:<8} built in {setup:.2f} s, first iteration {first:.2f} s")
        for rnd in range(s.rounds):
            k = rnd % len(systems)
            line = []
            for name in systems[k:] + systems[:k]:
                its = built[name].iterate(s.iterations_of(name))
                x = Sample(name, env_id, rnd, s.batch_size, *map(list, zip(*its)))
                res.samples.append(x)
                line.append(f"{name} {x.sps:,.0f}")
            log(f"{env_id:<16} round {rnd + 1}/{s.rounds}: " + ", ".join(line) + " steps/s")
    finally:
        for system in built.values():
            system.close()


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
LABELS = {"env": "env only, random actions", "rollout": "rollout only (our sampling)",
          "ppo": "PPO (ours)", "mcpo": "MCPO (ours)", "sb3-ppo": "SB3 PPO"}


def _label(system: str, s: Settings) -> str:
    return f"MCPO (ours, N={s.memory_size})" if system == "mcpo" else LABELS[system]


def _num(st: dict | None, fmt: str = "{:,.0f}", suffix: str = "") -> str:
    if not st:
        return "-"
    one = lambda v: fmt.format(v) + suffix  # noqa: E731
    if st["n"] == 1:
        return one(st["median"])
    return f"{one(st['median'])} [{fmt.format(st['min'])}-{fmt.format(st['max'])}]"


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A Markdown table; the first `left` columns left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(  # noqa: E731
        c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 2)) if i < left else ("-" * (w + 1) + ":")
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def format_report(res: BenchResult) -> str:
    s, summ = res.settings, res.summary()
    envs = [e for e in s.env_ids if any(x.env_id == e for x in res.samples)]
    systems = [x for x in s.systems if any(y.system == x for y in res.samples)]
    m = res.machine
    rounds_done = {e: len({x.round for x in res.samples if x.env_id == e}) for e in envs}
    learners = [x for x in systems if x in ("ppo", "mcpo", "sb3-ppo")]
    out = [
        f"mcpo bench, {res.started}, {res.seconds:.0f} s",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable of {m['cpus']} CPUs, load average "
        f"(1, 5, 15 min) {m.get('loadavg_start')} at start, {m.get('loadavg_end')} at end",
        "versions: " + ", ".join(f"{k} {val}" for k, val in m["versions"].items() if val),
        f"setting: num_envs {s.num_envs}, num_steps {s.num_steps}, {s.update_epochs} epochs x "
        f"{s.num_minibatches} minibatches of {s.minibatch_size}, "
        f"{'x'.join(map(str, s.hidden_sizes))} tanh actor and critic, observation and reward "
        f"normalization",
        f"method: per env, each system built once and its first iteration (JIT compile) left "
        f"out; then {', '.join(f'{n} rounds on {e}' for e, n in rounds_done.items())}, each "
        f"running every system in turn (rotating order) for {s.iterations} iteration(s) of "
        f"{s.batch_size} steps ({s.sb3_iterations} for SB3). Figures: median [min-max] over "
        f"rounds; ratios paired within a round.",
        "",
        "Steps per second, steady state",
        "",
        _table(["system"] + envs,
               [[_label(x, s)] + [_num(summ["sps"].get(f"{x}|{e}")) for e in envs]
                for x in systems]),
        "",
    ]
    ratio_rows = []
    for num, den in RATIOS:
        cells = [summ["ratios"].get(f"{num}/{den}|{e}") for e in envs]
        if any(cells):
            ratio_rows.append([f"{_label(num, s)} / {_label(den, s)}"]
                              + [_num(c, "{:.2f}", "x") for c in cells])
    if ratio_rows:
        out += ["Ratios (steady state, paired within each round)", "",
                _table(["ratio"] + envs, ratio_rows), ""]
    target_rows = []
    for name, target in TARGETS:
        for e in envs:
            t = summ["targets"].get(f"{name}|{e}")
            if t:
                target_rows.append([f"{_label(name, s)} >= {target:g}x SB3 PPO", e,
                                    _num(summ["ratios"][f"{name}/sb3-ppo|{e}"], "{:.2f}",
                                         "x"),
                                    f"{t['rounds_met']}/{t['rounds']}",
                                    "met" if t["met"] else "NOT met"])
    if target_rows:
        out += ["Targets (DESIGN.md §7; the verdict is on the median ratio)", "",
                _table(["target", "env", "ratio", "rounds meeting it", "verdict"],
                       target_rows, left=2), ""]
    split_rows = []
    for x in systems:
        for e in envs:
            sp = summ["split"].get(f"{x}|{e}")
            if not sp:
                continue
            it, ro, up, ot = (sp["iteration_mean"], sp["rollout_mean"], sp["update_mean"],
                              sp["other_mean"])
            pct = lambda a: f"{1e3 * a:,.1f} ({100 * a / it:.0f}%)"  # noqa: E731
            learns = x in learners
            split_rows.append([
                _label(x, s), e, f"{1e3 * it:,.1f}", pct(ro), pct(up) if learns else "-",
                pct(ot) if x in ("ppo", "mcpo") else "-", f"{1e6 * ro / s.batch_size:,.1f}",
                (f"{1e3 * up / (s.update_epochs * s.num_minibatches):.3f}"
                 if learns else "-")])
    out += ["Where the time goes (steady state, per iteration; medians over rounds). "
            "rollout: collecting the steps (ours: policy sampling in NumPy, normalization, "
            "NaN check); update: GAE + all epochs and minibatches (ours: one jitted call; "
            "SB3: train() and its logging); other: our logging, NaN checks of the learner "
            "state, checkpoints.", "",
            _table(["system", "env", "iteration ms", "rollout ms", "update ms", "other ms",
                    "rollout us/step", "update ms/minibatch"], split_rows, left=2), ""]
    setup_rows = []
    for x in learners:
        for e in envs:
            st = summ["setup"].get(f"{x}|{e}")
            if st:
                setup_rows.append([_label(x, s), e, f"{st['setup_s']:.2f}",
                                   f"{st['first_iteration_s']:.2f}",
                                   f"{st['sps_with_setup']:,.0f}", f"{st['steps']:,}"])
    if setup_rows:
        cache = ("persistent XLA compile cache on" if s.compile_cache
                 else "cold compile, no persistent cache")
        out += [f"Setup and first iteration (ours: JIT compile, {cache}), one build per system "
                f"and env; steps/s over the whole measured run with them included", "",
                _table(["system", "env", "setup s", "1st iteration s",
                        "steps/s incl. setup", "over steps"], setup_rows, left=2)]
    if res.notes:
        out += ["", "Notes:"] + [f"* {n}" for n in res.notes]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Command line (wired in mcpo/cli.py as `mcpo bench`)
# ---------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    from mcpo.cli import _int

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = (
        "Steps per second, side by side in one process, of: the bare vector env (random "
        "actions), our rollout alone, our PPO and MCPO training, and stable-baselines3 PPO when "
        "installed, with the same env, sizes and 64x64 tanh networks. The systems take turns, "
        "round after round; the report gives median [min-max] over rounds, ratios paired "
        "within a round, the targets of DESIGN.md §7 and where the time goes. Method: "
        "mcpo/bench.py; recorded results: benchmarks/RESULTS.md.")
    p.epilog = ("examples:\n"
                "  mcpo bench                          # the recorded setting, ~4-6 min\n"
                "  mcpo bench --quick                  # ~1 min smoke\n"
                "  mcpo bench --env-ids Pendulum-v1 --num-envs 8 --num-steps 256 --json b.json")
    p.add_argument("--env-ids", nargs="+", default=list(DEFAULT_ENVS), metavar="ENV",
                   help="Gymnasium env ids; one whose optional dependency is missing is "
                   "skipped with a note (default: %(default)s)")
    p.add_argument("--num-envs", type=_int, default=1, help="parallel envs (default: 1)")
    p.add_argument("--num-steps", type=_int, default=2048,
                   help="steps per env per rollout, T (default: 2048)")
    p.add_argument("--update-epochs", type=_int, default=10, help="epochs K (default: 10)")
    p.add_argument("--num-minibatches", type=_int, default=32,
                   help="minibatches per epoch (default: 32)")
    p.add_argument("--memory-size", type=_int, default=10, help="MCPO's N (default: 10)")
    p.add_argument("--rounds", type=_int, default=None,
                   help=f"rounds per env; in each, every system takes its turn (default: "
                   f"{FULL['rounds']}; --quick: {QUICK['rounds']})")
    p.add_argument("--iterations", type=_int, default=None,
                   help=f"iterations per turn of env, rollout, ppo and mcpo (default: "
                   f"{FULL['iterations']}; --quick: {QUICK['iterations']})")
    p.add_argument("--sb3-iterations", type=_int, default=None,
                   help=f"iterations per turn of SB3 (default: {FULL['sb3_iterations']}; "
                   f"--quick: {QUICK['sb3_iterations']})")
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS),
                   help="what to measure (default: all)")
    p.add_argument("--seed", type=_int, default=1, help="seed (default: 1)")
    p.add_argument("--sb3-threads", type=_int, default=1,
                   help="torch threads for SB3; 0 keeps torch's default, one per core "
                   "(default: 1, SB3's fastest on 2 cores)")
    p.add_argument("--compile-cache", action="store_true",
                   help="let our trainers use the persistent XLA compile cache (default: "
                   "compile cold, so the first-iteration figures are a first run's)")
    p.add_argument("--quick", action="store_true",
                   help=f"~1 minute smoke: {QUICK['rounds']} rounds of {QUICK['iterations']} "
                   f"iteration ({QUICK['sb3_iterations']} for SB3); explicit flags win")
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
                    sb3_threads=ns.sb3_threads, compile_cache=ns.compile_cache)


def run_from_args(ns: argparse.Namespace) -> int:
    from mcpo.config import ConfigError

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
