"""The systems `mcpo bench` measures: build (setup), then `iterate(n)` -> [(wall, rollout,
update)] per iteration of `steps_per_iteration` steps. Every system on an env takes its sizes
from the config of our PPO run there (`Settings.train_config`). Our trainers run their own loop
in a thread and take turns through the trainer's public `Callback` hooks."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import jax
import numpy as np

from mcpo.bench.sb3 import SB3
from mcpo.bench.settings import TURN_TIMEOUT, Settings
from mcpo.envpool_vec import make_backend_vec_env
from mcpo.envs import env_seeds, network_kind
from mcpo.networks import make_policy
from mcpo.rollout import Collector
from mcpo.trainer import Callback, Trainer

class EnvOnly:
    """The vector env alone, uniform random actions drawn in one call per iteration."""

    def __init__(self, s: "Settings", env_id: str, workdir: Path):
        cfg = s.train_config("ppo", env_id)
        self.shape = (cfg.num_steps, cfg.num_envs)
        self.steps_per_iteration = cfg.batch_size
        self.vec = make_backend_vec_env(env_id, cfg.num_envs, cfg.backend, cfg.vec_env)
        self.vec.reset(env_seeds(cfg.seed, 0, cfg.num_envs))
        self.rng = np.random.default_rng([cfg.seed, 7])

    def iterate(self, n: int) -> list[tuple[float, float, float]]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            actions = _random_actions(self.vec.single_action_space, self.rng, self.shape)
            for a in actions:
                self.vec.step(a)
            dt = time.perf_counter() - t
            out.append((dt, dt, 0.0))
        return out

    def close(self) -> None:
        self.vec.close()


def _random_actions(space, rng, prefix: tuple):
    if hasattr(space, "low"):
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        return rng.uniform(low, high, prefix + space.shape).astype(space.dtype)
    return (getattr(space, "start", 0) + rng.integers(0, space.n, prefix)).astype(np.int64)


class RolloutOnly:
    """The trainer's Collector with freshly initialized weights, no update."""

    def __init__(self, s: "Settings", env_id: str, workdir: Path):
        cfg = s.train_config("ppo", env_id)
        self.np, self.seed, self.it = np, cfg.seed, 0
        self.steps_per_iteration = cfg.batch_size
        self.vec = make_backend_vec_env(env_id, cfg.num_envs, cfg.backend, cfg.vec_env)
        space = self.vec.single_observation_space
        policy = make_policy(space, self.vec.single_action_space, cfg.hidden_sizes,
                             network_kind(env_id, space))
        params = jax.jit(policy.init)(jax.random.PRNGKey(cfg.seed))
        self.params, self.actor = params, policy.host_params(params["actor"])
        self.collector = Collector(self.vec, policy, num_steps=cfg.num_steps, gamma=cfg.gamma,
                                   norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward,
                                   clip_obs=cfg.clip_obs, clip_reward=cfg.clip_reward)
        self.collector.start(cfg.seed, 0)

    def iterate(self, n: int) -> list[tuple[float, float, float]]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            self.collector.collect(self.actor, self.np.random.default_rng([self.seed, self.it]),
                                   theta_old=self.params)
            dt = time.perf_counter() - t
            self.it += 1
            out.append((dt, dt, 0.0))
        return out

    def close(self) -> None:
        self.vec.close()


class Ours:
    """Our Trainer running its own loop (`Trainer.run`) in a thread that waits for its turn
    before each iteration (a `Callback`); an iteration is timed from the moment it may start to
    the moment the next one asks for its turn, so logging, NaN checks and checkpoints count.
    The rollout/update split is the trainer's own (its metrics row)."""

    def __init__(self, system: str, s: Settings, env_id: str, workdir: Path):
        self.go: queue.Queue = queue.Queue()
        self.done: queue.Queue = queue.Queue()
        run_dir = workdir / f"{system}-{env_id}"
        cfg = s.train_config(system, env_id, str(run_dir)).validate()
        self.steps_per_iteration = cfg.batch_size
        self.trainer = Trainer(cfg, run_dir, [_TakeTurns(self.go, self.done)])
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.thread = threading.Thread(target=self._run, name=f"bench-{system}-{env_id}",
                                       daemon=True)
        self.thread.start()
        self._expect("ready")  # run()'s own set-up (logger, env reset) counts as setup

    def _run(self) -> None:
        try:
            self.trainer.run()
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


class _TakeTurns(Callback):
    """Blocks the training thread before each iteration until the bench says "go"; reports
    the previous iteration's (wall, rollout, update) seconds when the next one asks."""

    def __init__(self, go: queue.Queue, done: queue.Queue):
        self.go, self.done = go, done
        self.t_start: float | None = None
        self.row: dict | None = None

    def _report(self) -> None:
        if self.t_start is not None and self.row is not None:
            self.done.put(("iteration", (time.perf_counter() - self.t_start,
                                         self.row["rollout_time"], self.row["update_time"])))
        self.t_start = self.row = None

    def on_train_start(self, trainer) -> None:
        self.done.put(("ready", time.perf_counter()))

    def before_iteration(self, trainer) -> bool | None:
        self._report()
        if self.go.get() == "stop":
            return False
        self.t_start = time.perf_counter()
        return None

    def on_iteration(self, trainer, row: dict) -> None:
        self.row = row

    def on_train_end(self, trainer, result) -> None:
        self._report()


BUILD = {"env": EnvOnly, "rollout": RolloutOnly,
         "ppo": lambda *a: Ours("ppo", *a), "mcpo": lambda *a: Ours("mcpo", *a),
         "mcpo-paper": lambda *a: Ours("mcpo-paper", *a),
         "sb3-ppo": SB3}
