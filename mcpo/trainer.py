"""The training loop shared by every algorithm: collect -> update -> log -> checkpoint; resume.

One iteration: T steps from the vector env with theta_old, GAE, then the algorithm's whole
update (K epochs x minibatches) as one jitted call. The learner state, normalization statistics,
counters and logger position are checkpointed together; environments are re-seeded from
(seed, iteration) on resume, so resuming twice from one checkpoint gives identical numbers.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import math
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np

from mcpo.algos import ALGOS
from mcpo.algos.common import all_finite
from mcpo.checkpoint import CheckpointError, atomic_write_bytes, flatten, load_checkpoint, \
    restore, save_checkpoint
from mcpo.config import ConfigError, TrainConfig
from mcpo.envs import make_vec_env
from mcpo.logger import MetricsLogger
from mcpo.networks import make_policy
from mcpo.rollout import Collector, Interrupted, make_prepare_batch

LATEST = "latest.ckpt"
CKPT_DIR = "checkpoints"
RECENT_EPISODES = 100


class NonFiniteError(RuntimeError):
    """A loss, parameter, reward or observation became NaN/Inf."""


class TrainingInterrupted(RuntimeError):
    def __init__(self, signum: int, run_dir: Path, global_step: int):
        self.signum, self.run_dir, self.global_step = signum, run_dir, global_step
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: checkpoint written at step {global_step}. "
                         f"Resume with: mcpo train --resume {run_dir}")


@dataclass
class RunResult:
    run_dir: str
    algo: str
    env_id: str
    seed: int
    global_step: int
    iterations: int
    episodes: int
    final_return: float      # mean raw return of the last 100 training episodes
    eval_return_mean: float  # deterministic evaluation at the end (nan if none)
    eval_return_std: float
    sps: float               # env steps per second over this process's iterations
    wall_time: float

    def summary(self) -> str:
        ev = ("" if math.isnan(self.eval_return_mean) else
              f"\n  eval return    {self.eval_return_mean:.2f} +- {self.eval_return_std:.2f} "
              f"(deterministic)")
        return (f"Done: {self.algo} on {self.env_id} (seed {self.seed})\n"
                f"  steps          {self.global_step:,} in {self.iterations} iterations, "
                f"{self.wall_time:.1f} s, {self.sps:,.0f} steps/s\n"
                f"  train return   {self.final_return:.2f} (mean of last "
                f"{min(self.episodes, RECENT_EPISODES)} episodes){ev}\n"
                f"  run dir        {self.run_dir}")


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.env_id}__{cfg.algo}__{cfg.seed}__{stamp}"


def _is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def check_new_run_dir(path: Path, overwrite: bool) -> None:
    """Refuse an existing run dir unless overwriting an mcpo run dir (nothing else deleted)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"Run directory {path} exists and is not a directory.")
    if not overwrite:
        if not any(path.iterdir()):
            return
        raise ConfigError(f"Run directory {path} already exists. Continue it with "
                          f"`mcpo train --resume {path}`, replace it with --overwrite, or choose "
                          f"another --run-dir.")
    if any(path.iterdir()) and not _is_run_dir(path):
        raise ConfigError(f"--overwrite refused: {path} is not an mcpo run directory (no "
                          f"config.json), so it is left untouched.")


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.spec = ALGOS[cfg.algo]
        self.vec = make_vec_env(cfg.env_id, cfg.num_envs, cfg.vec_env)
        self.policy = make_policy(self.vec.single_observation_space,
                                  self.vec.single_action_space, cfg.hidden_sizes)
        self.collector = Collector(self.vec, self.policy, num_steps=cfg.num_steps,
                                   gamma=cfg.gamma, norm_obs=cfg.norm_obs,
                                   norm_reward=cfg.norm_reward, clip_obs=cfg.clip_obs,
                                   clip_reward=cfg.clip_reward)
        # one compiled call instead of dozens of eagerly dispatched init ops (~3 s -> ~0.5 s)
        self.state = jax.jit(self.spec.init, static_argnums=(0, 1))(
            cfg, self.policy, jax.random.PRNGKey(cfg.seed))
        self.prepare = make_prepare_batch(self.policy, cfg.gamma, cfg.gae_lambda)
        self.update = jax.jit(self.spec.make_update(cfg, self.policy))
        self.finite = jax.jit(finite_leaves)
        self.iteration = 0
        self.global_step = 0
        self.episodes = 0
        self.recent = collections.deque(maxlen=RECENT_EPISODES)
        self.wall_time = 0.0
        self.saved_iteration = -1
        self._stop_signal = None
        self.logger: MetricsLogger | None = None

    # Paths -----------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / CKPT_DIR

    # Checkpoints ------------------------------------------------------------------------------
    def save(self, path: Path | None = None) -> Path:
        path = path or self.ckpt_dir / LATEST
        host = self.collector.state_dict()
        lost = host.pop("lost_episodes")
        arrays = {**flatten(self.state, "state"), **flatten(host, "host")}
        meta = {"format": 1, "algo": self.cfg.algo, "iteration": self.iteration,
                "global_step": self.global_step, "episodes": self.episodes,
                "lost_episodes": lost, "recent_returns": list(self.recent),
                "csv_rows": self.logger.rows if self.logger else 0,
                "wall_time": self.wall_time, "config": self.cfg.to_dict()}
        save_checkpoint(path, arrays, meta)
        if path.name == LATEST:
            self.saved_iteration = self.iteration
        return path

    def load(self, path: Path) -> dict:
        arrays, meta = load_checkpoint(path)
        if meta.get("algo") != self.cfg.algo:
            raise CheckpointError(f"Checkpoint {path} is for algo {meta.get('algo')!r}, the "
                                  f"run's config says {self.cfg.algo!r}.")
        self.state = restore(self.state, arrays, "state", str(path))
        host_template = self.collector.state_dict()
        host_template.pop("lost_episodes")
        host = restore(host_template, arrays, "host", str(path))
        host["lost_episodes"] = meta["lost_episodes"]
        self.collector.load_state_dict(host)
        self.iteration = int(meta["iteration"])
        self.global_step = int(meta["global_step"])
        self.episodes = int(meta["episodes"])
        self.recent.extend(meta["recent_returns"])
        self.wall_time = float(meta["wall_time"])
        self.saved_iteration = self.iteration
        return meta

    # Signals ---------------------------------------------------------------------------------
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self._stop_signal is None:
                self._stop_signal = signum

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    # Checks ----------------------------------------------------------------------------------
    def _check_finite(self, what: dict, ckpt_note: str) -> None:
        for name, ok in what.items():
            if not bool(ok):
                raise NonFiniteError(
                    f"Non-finite value (NaN or Inf) in {name} at iteration {self.iteration + 1}"
                    f" (global step {self.global_step + self.cfg.batch_size}). The run "
                    f"stopped; {ckpt_note}")

    def _ckpt_note(self) -> str:
        if self.saved_iteration >= 0:
            return (f"the last good checkpoint ({self.ckpt_dir / LATEST}, iteration "
                    f"{self.saved_iteration}) is intact.")
        return "no checkpoint had been written yet."

    # The loop --------------------------------------------------------------------------------
    def lr_now(self) -> float:
        from mcpo.algos.common import total_optimizer_steps

        if not self.cfg.anneal_lr:
            return self.cfg.learning_rate
        frac = 1.0 - int(self.state.n_updates) / total_optimizer_steps(self.cfg)
        return self.cfg.learning_rate * max(frac, 0.0)

    def run(self, *, resumed_meta: dict | None = None) -> RunResult:
        cfg = self.cfg
        from tqdm import tqdm

        self.logger = MetricsLogger(
            self.run_dir, cfg.tensorboard,
            keep_rows=resumed_meta["csv_rows"] if resumed_meta else None,
            purge_step=self.global_step if resumed_meta else None)
        old_handlers = self._install_signal_handlers()
        bar = tqdm(total=cfg.num_iterations * cfg.batch_size, initial=self.global_step,
                   unit="step", unit_scale=True, dynamic_ncols=True, disable=not cfg.progress,
                   desc=f"{cfg.algo} {cfg.env_id}", smoothing=0.3)
        t_start = time.perf_counter()
        steps_start = self.global_step
        try:
            try:
                self.collector.start(cfg.seed, self.iteration)
                while self.iteration < cfg.num_iterations:
                    self._iterate(bar)
            except Interrupted:
                pass
            finally:
                bar.close()
                for s, h in old_handlers.items():
                    signal.signal(s, h)
            if self.saved_iteration != self.iteration:
                self.save()
            if self._stop_signal is not None:
                raise TrainingInterrupted(self._stop_signal, self.run_dir, self.global_step)
            return self._finish(time.perf_counter() - t_start, self.global_step - steps_start)
        finally:
            self.close()

    def _iterate(self, bar) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, self.iteration, 1])
        actor_np = jax.tree.map(np.asarray, jax.device_get(self.state.params["actor"]))
        ro, episodes = self.collector.collect(actor_np, rng,
                                              lambda: self._stop_signal is not None)
        self._check_finite({"observations": np.isfinite(ro.obs).all(),
                            "rewards": np.isfinite(ro.rewards).all()}, self._ckpt_note())
        t1 = time.perf_counter()
        batch = self.prepare(self.state.params, ro)
        new_state, stats = self.update(self.state, batch)
        stats = jax.device_get(stats)
        t2 = time.perf_counter()
        self._check_finite({f"the {k}": np.isfinite(v).all() for k, v in stats.items()
                            if np.issubdtype(np.asarray(v).dtype, np.floating)
                            and k != "explained_variance"}, self._ckpt_note())
        finite = jax.device_get(self.finite(new_state))
        self._check_finite({f"the learner state, {k}": v for k, v in finite.items()},
                           self._ckpt_note())
        self.state = new_state
        self.iteration += 1
        self.global_step += cfg.batch_size
        dt = t2 - t0
        self.wall_time += dt
        rets = [r for r, _ in episodes]
        self.episodes += len(episodes)
        self.recent.extend(rets)
        row = {"iteration": self.iteration, "global_step": self.global_step,
               "wall_time": self.wall_time, "sps": cfg.batch_size / dt,
               "rollout_time": t1 - t0, "update_time": t2 - t1,
               "episodes": len(episodes), "episodes_total": self.episodes,
               "ep_return_mean": float(np.mean(rets)) if rets else float("nan"),
               "ep_return_min": float(np.min(rets)) if rets else float("nan"),
               "ep_return_max": float(np.max(rets)) if rets else float("nan"),
               "ep_length_mean": (float(np.mean([n for _, n in episodes])) if episodes
                                  else float("nan")),
               "recent_return": float(np.mean(self.recent)) if self.recent else float("nan"),
               "learning_rate": self.lr_now(), **stats}
        self.logger.log(row, self.global_step)
        if self.recent:
            bar.set_postfix_str(f"sps={row['sps']:,.0f} return={row['recent_return']:.1f}",
                                refresh=False)
        bar.update(cfg.batch_size)
        if self.iteration % cfg.checkpoint_every == 0:
            self.save()
        if self._crossed_snapshot():
            self.save(self.ckpt_dir / f"step_{self.global_step:012d}.ckpt")

    def _crossed_snapshot(self) -> bool:
        """Did this iteration pass one of the `snapshots` evenly spaced points of the run?"""
        n, total = self.cfg.snapshots, self.cfg.num_iterations * self.cfg.batch_size
        if n == 0:
            return False
        mark = lambda step: (step * n) // total  # noqa: E731 - index of the last point passed
        return mark(self.global_step) > mark(self.global_step - self.cfg.batch_size)

    def _finish(self, elapsed: float, steps: int) -> RunResult:
        cfg = self.cfg
        ev_mean = ev_std = float("nan")
        if cfg.eval_episodes:
            from mcpo.agent import Agent, evaluate

            agent = Agent.from_trainer(self)
            rets = evaluate(agent, cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 10_000,
                            deterministic=True)
            ev_mean, ev_std = float(np.mean(rets)), float(np.std(rets))
        result = RunResult(
            run_dir=str(self.run_dir), algo=cfg.algo, env_id=cfg.env_id, seed=cfg.seed,
            global_step=self.global_step, iterations=self.iteration, episodes=self.episodes,
            final_return=float(np.mean(self.recent)) if self.recent else float("nan"),
            eval_return_mean=ev_mean, eval_return_std=ev_std,
            sps=steps / elapsed if elapsed > 0 else float("nan"), wall_time=self.wall_time)
        atomic_write_bytes(self.run_dir / "result.json",
                           json.dumps(_jsonable(asdict(result)), indent=2).encode())
        return result

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        self.vec.close()


def finite_leaves(state) -> dict:
    """{leaf path: all finite} over the floating-point leaves of the learner state."""
    return {jax.tree_util.keystr(p): all_finite(x)
            for p, x in jax.tree_util.tree_leaves_with_path(state)
            if jax.numpy.issubdtype(x.dtype, jax.numpy.floating)}


def _jsonable(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def enable_compile_cache() -> None:
    """Persist compiled XLA programs across processes (a repeated run starts ~5 s faster).

    MCPO_COMPILE_CACHE=<dir> chooses the directory, MCPO_COMPILE_CACHE=0 turns it off; a cache
    the user configured in JAX already is left alone."""
    import os

    where = os.environ.get("MCPO_COMPILE_CACHE", "")
    if where == "0" or jax.config.jax_compilation_cache_dir:
        return
    path = Path(where or Path.home() / ".cache" / "mcpo" / "jax").expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # read-only home: just compile every time
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def train(config: TrainConfig | None = None, *, overwrite: bool = False,
          **overrides) -> RunResult:
    """Validate, create the run directory and train. Raises ConfigError on bad input before
    anything is written."""
    cfg = config if config is not None else TrainConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    cfg.validate()
    enable_compile_cache()
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    check_new_run_dir(run_dir, overwrite)
    trainer = Trainer(cfg.replace(run_dir=str(run_dir)), run_dir)
    try:
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        (run_dir / CKPT_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.json", trainer.cfg.to_json().encode())
    except BaseException:
        trainer.close()
        raise
    return trainer.run()


def resume(run_dir, total_timesteps: int | None = None) -> RunResult:
    """Continue a run from its latest checkpoint (optionally extending its budget)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"Cannot resume {run_dir}: no config.json there (not an mcpo run "
                          f"directory?).")
    try:
        cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise ConfigError(f"Cannot resume {run_dir}: config.json is unreadable ({e}).") from None
    ckpt = run_dir / CKPT_DIR / LATEST
    if not ckpt.is_file():
        raise CheckpointError(f"Cannot resume {run_dir}: no checkpoint at {ckpt} (the run was "
                              f"stopped before its first checkpoint). Start it again with "
                              f"--overwrite.")
    if total_timesteps is not None:
        cfg = cfg.replace(total_timesteps=total_timesteps)
    cfg = cfg.replace(run_dir=str(run_dir))
    cfg.validate()
    enable_compile_cache()
    for stale in (run_dir / CKPT_DIR).glob(".*.tmp-*"):  # left by a kill during a save
        stale.unlink()
    trainer = Trainer(cfg, run_dir)
    try:
        meta = trainer.load(ckpt)
    except BaseException:
        trainer.close()
        raise
    if total_timesteps is not None:
        atomic_write_bytes(cfg_path, cfg.to_json().encode())
    return trainer.run(resumed_meta=meta)
