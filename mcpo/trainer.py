"""The training loop shared by every algorithm: collect -> update -> log -> checkpoint; resume.

One iteration: T steps from the vector env with theta_old, GAE, then the algorithm's whole
update (K epochs x minibatches) as one jitted call. The learner state, normalization statistics,
counters and logger position are checkpointed together; environments are re-seeded from
(seed, iteration) on resume, so resuming twice from one checkpoint gives identical numbers.

Watching or steering a run from outside (benchmarks, insight tools, sweeps) goes through
`Callback`s, the trainer's public hooks (as SB3's callbacks and Brax's `progress_fn`), never
through its private methods.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from tqdm import tqdm

try:  # private JAX API, for unroll_threefry_on_cpu (jax is pinned; skipped if it moved)
    from jax._src.interpreters import mlir as _mlir
    from jax._src.random import threefry2x32 as _threefry
except ImportError:
    _mlir = _threefry = None

from mcpo import compile_cache, xla_threads
from mcpo.agent import Agent, run_episodes
from mcpo.algos import ALGOS
from mcpo.algos.common import finite_leaves, learning_rate_at
from mcpo.checkpoint import (CHECKPOINT_FORMAT, atomic_write_bytes, check_checkpoint_meta,
                             flatten, load_checkpoint, restore, save_checkpoint)
from mcpo.config import EVAL_DETERMINISTIC, TrainConfig
from mcpo.envpool_vec import make_backend_vec_env
from mcpo.envs import RunningMeanStd, env_family, network_kind
from mcpo.jaxenv.registry import is_jax_backend
from mcpo.logger import MetricsLogger, check_metrics
from mcpo.networks import make_policy
from mcpo.rollout import Collector, Interrupted, episode_seed, make_prepare_batch
from mcpo.rundir import (CKPT_DIR, CONFIG, LATEST, METRICS, RESULT, RunDir, check_new,
                         crossed_snapshot, find_checkpoint, snapshot_name)
from mcpo.scores import atari_game, has_human_scores, human_normalized
from mcpo.types import CheckpointError, ConfigError, MCPOError, NonFiniteError, StorageError

RECENT_EPISODES = 100
FINAL_EVAL = 0xE7A1  # tag of the final evaluation's test seeds (mcpo.rollout.episode_seed)


class TrainingInterrupted(MCPOError):
    """SIGINT/SIGTERM stopped the run; its checkpoint holds everything done."""

    def __init__(self, signum: int, run_dir: Path, global_step: int, during: str = "",
                 written: bool = True):
        self.signum, self.run_dir, self.global_step = signum, run_dir, global_step
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        what = (f"{name} received during {during}" if during else f"{name} received")
        ckpt = (f"checkpoint written at step {global_step}" if written else
                f"the checkpoint at step {global_step} holds every completed iteration")
        super().__init__(f"{what}: {ckpt}. Resume with: mcpo train --resume {run_dir}")


class StartupInterrupted(MCPOError):
    """SIGINT/SIGTERM arrived before the run directory was written (or, resuming, changed)."""

    def __init__(self, signum: int, what: str):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"{signal.Signals(signum).name} received {what}")


class StopSignals:
    """While active (`with`, re-entrant), SIGINT and SIGTERM only set `signum` (the first
    one's number); the trainer polls it every env step and stops cleanly. Installed from the
    start of `train`/`resume`, so no KeyboardInterrupt can cut a start-up step in half. Only
    the main thread can install handlers; elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._depth = 0
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> "StopSignals":
        if self._depth == 0 and threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            for s, h in self._old.items():
                signal.signal(s, h)
            self._old = {}

    def check(self, what: str) -> None:
        """StartupInterrupted(`what`) if a signal has arrived."""
        if self.signum is not None:
            raise StartupInterrupted(self.signum, what)


class Callback:
    """Hooks into a run, called in the training thread. Return False from `before_iteration`
    or `on_iteration` to stop the run after the current iteration: a checkpoint is written,
    the final evaluation is skipped and the result is marked incomplete (no result.json)."""

    def on_train_start(self, trainer: "Trainer") -> None:
        """After set-up (envs reset, logger open), before the first iteration of this process."""

    def before_iteration(self, trainer: "Trainer") -> bool | None:
        """Before each iteration's rollout."""

    def on_iteration(self, trainer: "Trainer", row: dict) -> bool | None:
        """After each update, before `row` (this iteration's metrics) is logged: a callback
        may add columns to it."""

    def on_train_end(self, trainer: "Trainer", result: "RunResult") -> None:
        """After the run ends normally or by a callback's stop (not after an error)."""


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
    sps: float               # env steps/s over this process's iterations (the whole run's if none)
    wall_time: float
    complete: bool = True    # False when a callback stopped the run early
    # Added with the MiniGrid and Atari families (nan when they do not apply or did not run):
    eval_sampled_return_mean: float = math.nan   # evaluation with sampled actions
    eval_sampled_return_std: float = math.nan
    final_success_rate: float = math.nan   # MiniGrid: of the last 100 training episodes
    eval_success_rate: float = math.nan    # MiniGrid: deterministic evaluation
    eval_sampled_success_rate: float = math.nan
    final_hns: float = math.nan            # Atari: human-normalized final_return
    eval_hns: float = math.nan             # Atari: human-normalized eval_return_mean

    def summary(self) -> str:
        def ok(x):
            return not math.isnan(x)

        lines = []
        if ok(self.final_success_rate):
            lines.append(f"  train success  {self.final_success_rate:.2f} (same episodes)")
        if ok(self.final_hns):
            lines.append(f"  train HNS      {self.final_hns:.3f} (human-normalized)")
        for mode, mean, std, succ in (
                ("deterministic", self.eval_return_mean, self.eval_return_std,
                 self.eval_success_rate),
                ("sampled", self.eval_sampled_return_mean, self.eval_sampled_return_std,
                 self.eval_sampled_success_rate)):
            if ok(mean):
                extra = f", success {succ:.2f}" if ok(succ) else ""
                lines.append(f"  eval return    {mean:.2f} +- {std:.2f} ({mode}{extra})")
        if ok(self.eval_hns):
            lines.append(f"  eval HNS       {self.eval_hns:.3f} (deterministic)")
        head = "Done" if self.complete else "Stopped early"
        return "\n".join([
            f"{head}: {self.algo} on {self.env_id} (seed {self.seed})",
            f"  steps          {self.global_step:,} in {self.iterations} iterations, "
            f"{self.wall_time:.1f} s, {self.sps:,.0f} steps/s",
            f"  train return   {self.final_return:.2f} (mean of last "
            f"{min(self.episodes, RECENT_EPISODES)} episodes)", *lines,
            f"  run dir        {self.run_dir}"])

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (math.nan if v is None else v) for k, v in d.items() if k in names})


def run_name(cfg: TrainConfig) -> str:
    return f"{cfg.env_id.replace('/', '-')}__{cfg.algo}__{cfg.seed}"


def default_run_dir(cfg: TrainConfig, stamp: str | None = None) -> Path:
    stamp = stamp or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{run_name(cfg)}__{stamp}"


def checkpoint_note(saved_iteration: int, saved_snapshot: tuple[int, str] | None,
                    run_dirs: Sequence[Path]) -> str:
    """Which checkpoint stopped runs keep (latest.ckpt of `saved_iteration`, -1: none, or a
    newer snapshot), truthfully, and the command that continues them."""
    one = len(run_dirs) == 1
    dirs = " ".join(str(d) for d in run_dirs)
    if saved_iteration >= 0 and (saved_snapshot is None or saved_snapshot[0] <= saved_iteration):
        where = (f"{Path(run_dirs[0]) / CKPT_DIR / LATEST}" if one
                 else f"{CKPT_DIR}/{LATEST} of each run")
        return (f"{'its last good checkpoint' if one else 'the last good checkpoints'}, "
                f"{where} (iteration {saved_iteration}), "
                f"{'is' if one else 'are'} intact; `mcpo train --resume {dirs}` continues "
                f"from {'it' if one else 'them'}.")
    if saved_snapshot is not None:
        it, name = saved_snapshot
        what = (f"its last good checkpoint is the snapshot {Path(run_dirs[0]) / CKPT_DIR / name}"
                if one else f"the last good checkpoints are the snapshots {CKPT_DIR}/{name}")
        return (f"{what} (iteration {it}); `mcpo train --resume {dirs} --resume-from {name}` "
                f"continues from {'it' if one else 'them'}.")
    return "no checkpoint had been written yet, so there is nothing to resume."


def install_stop_handlers(record) -> dict:
    """SIGINT/SIGTERM call `record(signum)` instead of raising, so a run can finish its
    iteration and checkpoint (main thread only). Returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, lambda signum, frame: record(signum))
            for s in (signal.SIGINT, signal.SIGTERM)}


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, callbacks: Sequence[Callback] = (),
                 signals: StopSignals | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        if is_jax_backend(cfg.backend):
            raise ConfigError(f"--backend {cfg.backend} trains in mcpo.jaxenv.runner (mcpo.train "
                              f"and `mcpo train` choose it); mcpo.trainer.Trainer is the "
                              f"Gymnasium loop.")
        self.spec = ALGOS[cfg.algo]
        self.vec = make_backend_vec_env(cfg.env_id, cfg.num_envs, cfg.backend, cfg.vec_env)
        try:
            if cfg.norm_obs and self.vec.obs_dtype != np.float32:
                raise ConfigError(
                    f"--norm-obs normalizes vector observations; {cfg.env_id}'s are "
                    f"{self.vec.obs_dtype} {'x'.join(map(str, self.vec.obs_shape))} (images or "
                    f"grids, scaled or encoded inside the network). Use --no-norm-obs (the "
                    f"atari and minigrid presets do).")
            kind = network_kind(cfg.env_id, self.vec.single_observation_space)
            if xla_threads.PER_RUN_PROCESS:  # `mcpo train`; before the first JAX computation
                xla_threads.limit(xla_threads.requested(kind))
            self.policy = make_policy(self.vec.single_observation_space,
                                      self.vec.single_action_space, cfg.hidden_sizes, kind)
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
            # the algorithm's own callbacks (e.g. MCPO's psi evaluation) run before the user's
            if self.spec.make_callbacks is not None:
                self.callbacks[:0] = self.spec.make_callbacks(cfg, self.policy)
        except BaseException:
            self.vec.close()
            raise
        self.iteration = 0
        self.global_step = 0
        self.episodes = 0
        self.recent = collections.deque(maxlen=RECENT_EPISODES)
        self.family = env_family(cfg.env_id)
        # MiniGrid: success of the recent episodes; Atari: the game, for human-normalized scores
        self.recent_success = collections.deque(maxlen=RECENT_EPISODES)
        self.game = atari_game(cfg.env_id) if has_human_scores(cfg.env_id) else None
        self.wall_time = 0.0
        self.saved_iteration = -1     # iteration of latest.ckpt (-1: none this run)
        self.saved_snapshot: tuple[int, str] | None = None  # (iteration, file) of the newest
        self.signals = signals if signals is not None else StopSignals()
        self._stop_requested = False
        self._wrote_final = False  # whether this process wrote the checkpoint after the loop
        self.logger: MetricsLogger | None = None

    # Paths -----------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / CKPT_DIR

    @property
    def num_iterations(self) -> int:
        return self.cfg.num_iterations

    # Checkpoints ------------------------------------------------------------------------------
    def save(self, path: Path | None = None) -> Path:
        path = path or self.ckpt_dir / LATEST
        host = self.collector.state_dict()
        lost = host.pop("lost_episodes")
        arrays = {**flatten(self.state, "state"), **flatten(host, "host")}
        meta = {"format": CHECKPOINT_FORMAT, "algo": self.cfg.algo, "iteration": self.iteration,
                "global_step": self.global_step, "episodes": self.episodes,
                "lost_episodes": lost, "recent_returns": list(self.recent),
                "recent_success": [bool(x) for x in self.recent_success],
                "csv_rows": self.logger.rows if self.logger else 0,
                "wall_time": self.wall_time, "config": self.cfg.to_dict()}
        save_checkpoint(path, arrays, meta)
        if path.name == LATEST:
            self.saved_iteration = self.iteration
        else:
            self.saved_snapshot = (self.iteration, path.name)
        return path

    def load(self, path: Path, loaded: tuple[dict, dict] | None = None) -> dict:
        """Restore the learner and host state from a checkpoint (`loaded`: its already read
        (arrays, meta)); returns the metadata."""
        arrays, meta = loaded if loaded is not None else load_checkpoint(path)
        check_checkpoint_meta(meta, path, self.cfg.algo)
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
        self.recent_success.extend(bool(x) for x in meta.get("recent_success", []))
        self.wall_time = float(meta["wall_time"])
        self.saved_iteration = self.iteration
        return meta

    def agent(self, actor=None) -> Agent:
        """The current policy (or `actor`, another actor pytree of this run's network, e.g.
        MCPO's psi) as an `Agent`, with a frozen copy of the observation statistics."""
        rms = None
        if self.collector.obs_rms is not None:
            rms = RunningMeanStd(self.collector.obs_rms.mean.shape)
            rms.load_state_dict(self.collector.obs_rms.state_dict())
        return Agent(self.policy, self.state.params["actor"] if actor is None else actor, rms,
                     self.cfg.clip_obs, self.vec.single_observation_space,
                     self.vec.single_action_space, self.cfg)

    # Signals ---------------------------------------------------------------------------------
    @property
    def _stop_signal(self) -> int | None:
        return self.signals.signum

    def _should_stop(self) -> bool:
        return self.signals.signum is not None

    # Checks ----------------------------------------------------------------------------------
    def _check_finite(self, what: dict) -> None:
        for name, ok in what.items():
            if not bool(ok):
                raise NonFiniteError(
                    f"Non-finite value (NaN or Inf) in {name} at iteration {self.iteration + 1}"
                    f" (global step {self.global_step + self.cfg.batch_size}). The run "
                    f"stopped; {self._ckpt_note()}")

    def _ckpt_note(self) -> str:
        """Which checkpoint a stopped run keeps, truthfully."""
        return checkpoint_note(self.saved_iteration, self.saved_snapshot, [self.run_dir])

    # The loop --------------------------------------------------------------------------------
    def lr_now(self) -> float:
        return learning_rate_at(self.cfg, int(self.state.n_updates))

    def _notify(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            if getattr(cb, hook)(self, *args) is False:
                self._stop_requested = True

    def run(self, *, resumed_meta: dict | None = None) -> RunResult:
        cfg = self.cfg
        with self.signals:
            try:
                # TensorBoard drops events from purge_step on: those after the checkpoint
                self.logger = MetricsLogger(
                    self.run_dir, cfg.tensorboard,
                    keep_rows=resumed_meta["csv_rows"] if resumed_meta else None,
                    purge_step=self.global_step + 1 if resumed_meta else None,
                    last_iteration=self.iteration)
                return self._run(resumed_meta is not None)
            except StorageError as e:
                raise StorageError(f"{e} The run stopped in iteration {self.iteration}; "
                                   f"{self._ckpt_note()} Free disk space (or fix the "
                                   f"permissions) first.") from None
            finally:
                self.close()

    def _run(self, resumed: bool) -> RunResult:
        cfg = self.cfg
        bar = tqdm(total=cfg.num_iterations * cfg.batch_size, initial=self.global_step,
                   unit="step", unit_scale=True, dynamic_ncols=True, disable=not cfg.progress,
                   desc=f"{cfg.algo} {cfg.env_id}", smoothing=0.3)
        t_start = time.perf_counter()
        steps_start = self.global_step
        first_iteration = self.iteration
        try:
            self.collector.start(cfg.seed, self.iteration)
            self._notify("on_train_start")
            while self.iteration < cfg.num_iterations and not self._stop_requested:
                self._notify("before_iteration")
                if self._stop_requested:
                    break
                self._iterate(bar)
        except Interrupted:
            pass
        finally:
            bar.close()
        written = self._wrote_final = self.saved_iteration != self.iteration
        if written:
            self.save()
        if self._stop_signal is not None:
            during = ""
            if self.iteration == first_iteration:
                during = ("start-up, before the first iteration" + (" of this resume"
                          if resumed else " (nothing was trained yet)"))
            raise TrainingInterrupted(self._stop_signal, self.run_dir, self.global_step,
                                      during=during, written=written)
        result = self._finish(time.perf_counter() - t_start, self.global_step - steps_start)
        self._notify("on_train_end", result)
        return result

    def _iterate(self, bar) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, self.iteration, 1])
        actor_np = self.policy.host_params(self.state.params["actor"])
        ro, episodes = self.collector.collect(actor_np, rng, self._should_stop,
                                              theta_old=self.state.params)
        self._check_finite({"observations": (not np.issubdtype(ro.obs.dtype, np.floating)
                                             or np.isfinite(ro.obs).all()),
                            "rewards": np.isfinite(ro.rewards).all()})
        t1 = time.perf_counter()
        batch = self.prepare(self.state.params, ro)
        new_state, stats = self.update(self.state, batch)
        stats = jax.device_get(stats)
        t2 = time.perf_counter()
        self._check_finite({f"the {k}": np.isfinite(v).all() for k, v in stats.items()
                            if np.issubdtype(np.asarray(v).dtype, np.floating)
                            and k != "explained_variance"})
        finite = jax.device_get(self.finite(new_state))
        self._check_finite({f"the learner state, {k}": v for k, v in finite.items()})
        self.state = new_state
        self.iteration += 1
        self.global_step += cfg.batch_size
        dt = t2 - t0
        self.wall_time += dt
        rets = [e.ret for e in episodes]
        self.episodes += len(episodes)
        self.recent.extend(rets)
        self.recent_success.extend(e.success for e in episodes)
        row = {"iteration": self.iteration, "global_step": self.global_step,
               "wall_time": self.wall_time, "sps": cfg.batch_size / dt,
               "rollout_time": t1 - t0, "update_time": t2 - t1,
               "episodes": len(episodes), "episodes_total": self.episodes,
               "ep_return_mean": float(np.mean(rets)) if rets else float("nan"),
               "ep_return_min": float(np.min(rets)) if rets else float("nan"),
               "ep_return_max": float(np.max(rets)) if rets else float("nan"),
               "ep_length_mean": (float(np.mean([e.length for e in episodes])) if episodes
                                  else float("nan")),
               "recent_return": float(np.mean(self.recent)) if self.recent else float("nan"),
               **self._family_columns(episodes),
               "learning_rate": self.lr_now(), **stats}
        self._notify("on_iteration", row)
        self.logger.log(row, self.global_step)
        if self.recent:
            bar.set_postfix_str(f"sps={row['sps']:,.0f} return={row['recent_return']:.1f}",
                                refresh=False)
        bar.update(cfg.batch_size)
        if self.iteration % cfg.checkpoint_every == 0:
            self.save()
        if self._crossed_snapshot():
            self.save(self.ckpt_dir / snapshot_name(self.global_step))

    def _family_columns(self, episodes) -> dict:
        """MiniGrid: success rate of this iteration's episodes and of the last 100; Atari:
        human-normalized score of this iteration's mean score and of the last 100's."""
        nan = float("nan")
        if self.family == "minigrid":
            return {"success_rate": (float(np.mean([e.success for e in episodes])) if episodes
                                     else nan),
                    "recent_success": (float(np.mean(self.recent_success))
                                       if self.recent_success else nan)}
        if self.game is not None:
            hns = lambda x: human_normalized(self.game, x)  # noqa: E731
            return {"ep_hns_mean": hns(np.mean([e.ret for e in episodes])) if episodes else nan,
                    "recent_hns": hns(np.mean(self.recent)) if self.recent else nan}
        return {}

    def _crossed_snapshot(self) -> bool:
        """Did this iteration pass one of the `snapshots` evenly spaced points of the run?"""
        return crossed_snapshot(self.cfg.snapshots, self.cfg.num_iterations * self.cfg.batch_size,
                                self.global_step, self.cfg.batch_size)

    def _finish(self, elapsed: float, steps: int) -> RunResult:
        cfg = self.cfg
        complete = not self._stop_requested
        nan = float("nan")
        ev = {}  # mode -> (mean return, std, success rate)
        if cfg.eval_episodes and complete:
            for det in EVAL_DETERMINISTIC[cfg.eval_mode]:
                try:
                    eps = run_episodes(self.agent(), cfg.env_id, cfg.eval_episodes,
                                       seed=episode_seed(cfg.seed, FINAL_EVAL),
                                       deterministic=det,
                                       should_stop=self._should_stop)
                except Interrupted:
                    raise TrainingInterrupted(
                        self._stop_signal, self.run_dir, self.global_step,
                        during="the final evaluation (training is complete; resuming runs "
                        "only the evaluation)", written=self._wrote_final) from None
                rets = [e.ret for e in eps]
                ev[det] = (float(np.mean(rets)), float(np.std(rets)),
                           float(np.mean([e.success for e in eps])))
        ev_mean, ev_std, ev_succ = ev.get(True, (nan, nan, nan))
        sm_mean, sm_std, sm_succ = ev.get(False, (nan, nan, nan))
        minigrid = self.family == "minigrid"
        final_return = float(np.mean(self.recent)) if self.recent else nan
        hns = (lambda x: human_normalized(self.game, x) if self.game and not math.isnan(x)  # noqa
               else nan)
        if steps > 0 and elapsed > 0:
            sps = steps / elapsed
        else:  # nothing left to train in this process: the run's own training speed
            sps = self.global_step / self.wall_time if self.wall_time > 0 else float("nan")
        result = RunResult(
            run_dir=str(self.run_dir), algo=cfg.algo, env_id=cfg.env_id, seed=cfg.seed,
            global_step=self.global_step, iterations=self.iteration, episodes=self.episodes,
            final_return=final_return, eval_return_mean=ev_mean, eval_return_std=ev_std,
            sps=sps, wall_time=self.wall_time, complete=complete,
            eval_sampled_return_mean=sm_mean, eval_sampled_return_std=sm_std,
            final_success_rate=(float(np.mean(self.recent_success))
                                if minigrid and self.recent_success else nan),
            eval_success_rate=ev_succ if minigrid else nan,
            eval_sampled_success_rate=sm_succ if minigrid else nan,
            final_hns=hns(final_return), eval_hns=hns(ev_mean))
        if complete:
            write_result(self.run_dir, result)
        return result

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        self.vec.close()


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def unroll_threefry_on_cpu() -> None:
    """Lower JAX's threefry PRNG on CPU unrolled, as JAX does on other platforms.

    On CPU JAX lowers it as a rolled 5-iteration while loop (less to compile); XLA's CPU
    runtime then launches ~80 small kernels per random call, and the gymnax rollout makes 5
    calls per step. Same bits either way; measured (paired, 1 seed, Pendulum PPO, same compile
    time): rollout -33%, whole iteration -16%. Private JAX API (jax is pinned): skipped if it
    moved."""
    if _mlir is None:
        return
    try:
        _mlir.register_lowering(_threefry.threefry2x32_p, _threefry._threefry2x32_lowering_rule,
                                platform="cpu")
    except AttributeError:
        pass


def prepare_jax(compile_cache: bool = True) -> None:
    """What a training entry point sets up in JAX before compiling: the unrolled threefry
    lowering and (`compile_cache`) the persistent compile cache."""
    unroll_threefry_on_cpu()
    if compile_cache:
        enable_compile_cache()


def enable_compile_cache() -> None:
    """Persist compiled XLA programs across processes (a repeated run starts ~5 s faster).

    MCPO_COMPILE_CACHE=<dir> chooses the directory, MCPO_COMPILE_CACHE=0 turns it off; a cache
    the user configured in JAX already is left alone."""
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
    compile_cache.make_safe()  # entries whole or absent, unreadable ones dropped


def train(config: TrainConfig | None = None, *, overwrite: bool = False,
          callbacks: Sequence[Callback] = (), command: list[str] | None = None,
          **overrides) -> RunResult:
    """Validate, create the run directory and train. Everything (flags, env spaces, paths) is
    checked before the run directory is created; bad input raises ConfigError then. SIGINT or
    SIGTERM before that point raises StartupInterrupted (nothing written); after it, the run
    stops with a checkpoint (TrainingInterrupted)."""
    cfg = config if config is not None else TrainConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    signals = StopSignals()
    with signals:
        cfg.validate()
        prepare_jax()
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
        check_new(run_dir, overwrite)
        cfg = cfg.replace(run_dir=str(run_dir))
        trainer = Trainer(cfg, run_dir, callbacks, signals)  # envs, spaces, networks
        try:
            signals.check("during start-up, before the run directory was created: nothing "
                          "was written" + (" or deleted" if overwrite else "") + ".")
            rd = RunDir.create(run_dir, cfg, overwrite, command=command)
        except BaseException:
            trainer.close()
            raise
        with rd:
            return trainer.run()


def resume(run_dir, total_timesteps: int | None = None, *, resume_from: str | None = None,
           progress: bool | None = None, callbacks: Sequence[Callback] = ()) -> RunResult:
    """Continue a run from its latest checkpoint (or the snapshot `resume_from`), optionally
    with a new budget (recorded in run.json's history; config.json is never rewritten). A run
    that has finished returns its recorded result. Everything is checked (config, checkpoint,
    metrics.csv) before anything in the directory is changed."""
    run_dir = Path(run_dir)
    signals = StopSignals()
    # the lock first: nobody else may write while we read
    with signals, RunDir.open(run_dir) as rd:
        cfg = rd.read_config()
        ckpt = find_checkpoint(run_dir, resume_from)
        arrays, meta = load_checkpoint(ckpt)
        check_checkpoint_meta(meta, ckpt, cfg.algo)
        done = int(meta["global_step"])
        if done != meta["iteration"] * cfg.batch_size:
            raise CheckpointError(f"Checkpoint {ckpt}: global_step {done} is not iteration "
                                  f"{meta['iteration']} x the batch of {cfg.batch_size} "
                                  f"({run_dir / CONFIG}); one of them was edited.")
        new = resumed_config(cfg, total_timesteps, progress, done, ckpt)
        prepare_jax()
        recorded = recorded_result(run_dir, cfg, new, done, resume_from)
        if recorded is not None:
            return recorded
        metrics = run_dir / METRICS
        if metrics.exists():
            check_metrics(metrics, meta["csv_rows"], meta["iteration"], source=str(ckpt))
        trainer = Trainer(new, run_dir, callbacks, signals)
        try:
            trainer.load(ckpt, (arrays, meta))
            signals.check(f"while resuming, before anything was written: {run_dir} is "
                          f"unchanged.")
            record_resume(rd, cfg, new, done, ckpt, resume_from)
        except BaseException:
            trainer.close()
            raise
        if not metrics.exists() and meta["csv_rows"] > 0:
            print(f"mcpo: note: {metrics} is missing, so the rows of the first "
                  f"{meta['iteration']} iterations are gone; the resumed run writes a new one "
                  f"from iteration {meta['iteration'] + 1} on.", file=sys.stderr)
        return trainer.run(resumed_meta=meta)


def resumed_config(cfg: TrainConfig, total_timesteps: int | None, progress: bool | None,
                   done: int, ckpt: Path) -> TrainConfig:
    """The config a resume continues with: a new budget (at least the `done` steps) and/or
    progress setting over the run's own config; validated."""
    if total_timesteps is not None and total_timesteps != cfg.total_timesteps:
        if total_timesteps < done:
            raise ConfigError(f"--total-timesteps {total_timesteps:,} is less than the "
                              f"{done:,} steps {ckpt.name} has already trained; give at "
                              f"least {done:,} (a larger value extends the run).")
        new = cfg.replace(total_timesteps=total_timesteps)
        new.validate(check_env=False)
    else:
        new = cfg
    if progress is not None:
        new = new.replace(progress=progress)
    return new.validate()


def write_result(run_dir: Path, result: RunResult) -> None:
    """A finished run's result.json (what `recorded_result` and reports read)."""
    atomic_write_bytes(Path(run_dir) / RESULT,
                       (json.dumps(result.to_dict(), indent=2) + "\n").encode())


def recorded_result(run_dir: Path, cfg: TrainConfig, new: TrainConfig, done: int,
                    resume_from: str | None) -> RunResult | None:
    """A finished run's recorded result.json when resuming has nothing left to do."""
    finished = done >= new.num_iterations * new.batch_size
    if finished and resume_from is None and (run_dir / RESULT).is_file() \
            and new.total_timesteps == cfg.total_timesteps:
        try:
            return RunResult.from_dict(json.loads((run_dir / RESULT).read_text()))
        except (ValueError, TypeError):
            pass  # unreadable result.json: finish again (evaluation only)
    return None


def record_resume(rd: RunDir, cfg: TrainConfig, new: TrainConfig, done: int, ckpt: Path,
                  resume_from: str | None) -> None:
    """Commit to the resumed run directory and record a budget change / --resume-from."""
    rd.commit_resume()
    if new.total_timesteps != cfg.total_timesteps:
        rd.record("budget", total_timesteps=new.total_timesteps,
                  previous=cfg.total_timesteps, at_step=done)
    if resume_from is not None:
        rd.record("resume_from", checkpoint=ckpt.name, at_step=done)
