"""The host side of a pure-JAX run: a group of seeds trained together in one process.

`train_group(configs)` trains configs that differ only in `seed` and `run_dir`: their loop
states are stacked on a leading seed axis and `Loop.iteration` (rollout, GAE, update, logging
reductions) runs `vmap`ped over it as ONE jitted call per iteration. The host receives each
seed's metrics of the iteration and writes, per seed, an ordinary run directory through
`mcpo.rundir` (marker, lock, config.json with that seed, metrics.csv, tb/, checkpoints,
result.json), so `eval`, `--resume`, reports and sweeps treat each one like a single run.

Checkpoints hold, per seed, everything `Loop.iteration` reads -- learner state (same keys as
the Gymnasium backend's, so `mcpo.load` reads them), normalization statistics, and the env
states, episode counters and ring buffer of recent returns -- so no episode is lost on resume
(`lost_episodes` is 0) and a resumed run continues exactly as if it had not stopped.

Resuming (docs/design.md §8):
* `mcpo train --resume D1 D2 ...` resumes several runs of one group together (same config
  but seed, same checkpointed step): the same compiled function on the same stacked state, so
  the continuation is bit-identical to the uninterrupted group, and resuming twice from one
  checkpoint gives identical numbers.
* `mcpo train --resume D1` resumes one run alone (a group of one). Its numbers match the
  group's to float tolerance, not bit for bit: a vmapped program of another batch size is
  another XLA program (tests/test_jaxenv.py measures how close).

Over several CPU devices (one per core in `mcpo train`), the seeds run as one program per
device and, when the devices do not divide them, floating one-seed programs that move from
device to device (`seed_layout`; docs/design.md §3.1).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from mcpo.algos import ALGOS
from mcpo.algos.common import learning_rate_at
from mcpo.checkpoint import flatten, load_checkpoint, restore, save_checkpoint
from mcpo.config import EVAL_DETERMINISTIC, TrainConfig
from mcpo.envs import env_family
from mcpo.jaxenv.evaluate import make_evaluate
from mcpo.jaxenv.loop import Loop, LoopState, recent_in_order
from mcpo.jaxenv.registry import is_jax_backend, make_jax_env
from mcpo.jaxenv.running import from_state_dict, to_state_dict
from mcpo.logger import MetricsLogger
from mcpo.networks import make_policy
from mcpo.rundir import (CKPT_DIR, LATEST, RunDir, check_new, crossed_snapshot,
                         find_checkpoint, snapshot_name)
from mcpo.trainer import (CHECKPOINT_FORMAT, RECENT_EPISODES, Callback, RunResult,
                          TrainingInterrupted, check_checkpoint_meta, checkpoint_note,
                          install_stop_handlers, prepare_jax, record_resume,
                          recorded_result, resumed_config, write_result)
from mcpo.types import CheckpointError, ConfigError, NonFiniteError
from mcpo import watchdog, xla_threads
from mcpo.watchdog import EXIT_HUNG, HangWatchdog, hang_retries, hang_seconds, restart

EVAL_STREAM = 10_000  # fold_in constant of the final evaluation's key (its own stream per seed;
# the sampled evaluation of --eval-mode sampled/both uses EVAL_STREAM + 1)
PER_SEED = ("seed", "run_dir")  # what may differ between the configs of one group
# metrics.csv's episode columns, in the Gymnasium backend's order
EPISODE_COLUMNS = ("episodes", "episodes_total", "ep_return_mean", "ep_return_min",
                   "ep_return_max", "ep_length_mean", "recent_return")
SUCCESS_COLUMNS = ("success_rate", "recent_success")  # MiniGrid tasks, as the Gymnasium backend
_SEP = ", "


# Vmapped groups once deadlocked XLA's CPU runtime at their start: ACKTR's eigh on every try,
# xminigrid's envs in 6 of 8, gymnax MCPO in ~1 of 10. Native stacks showed why: jaxlib's
# LAPACK kernels (the orthogonal init's QR, ACKTR's eigh), batched over seeds, split the batch
# over XLA's intra-op pool and wait for it from inside the pool; two at once on a 2-thread
# pool wait forever. They now run one matrix at a time (mcpo.networks.one_matrix_at_a_time),
# so every method and backend trains vmapped (docs/design.md §3.1); the watchdog stays.


def check_group(cfgs: Sequence[TrainConfig]) -> None:
    """ConfigError unless the configs can train as one vmapped group: a JAX backend, the same
    settings but seed and run directory, distinct seeds and run directories."""
    if not cfgs:
        raise ConfigError("no runs to train: give at least one seed.")
    first = cfgs[0]
    if not is_jax_backend(first.backend):
        raise ConfigError(f"Training several seeds in one process needs a pure-JAX backend "
                          f"(--backend gymnax); --backend {first.backend} trains one seed per "
                          f"process.")
    base = {k: v for k, v in first.to_dict().items() if k not in PER_SEED}
    for c in cfgs[1:]:
        d = {k: v for k, v in c.to_dict().items() if k not in PER_SEED}
        diff = sorted(k for k in set(base) | set(d) if base.get(k) != d.get(k))
        if diff:
            raise ConfigError(f"Runs {first.run_dir} and {c.run_dir} cannot train as one "
                              f"group: their configs differ in {', '.join(diff)} (only seed "
                              f"and run directory may differ).")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds has a seed twice: {', '.join(map(str, seeds))}.")
    dirs = [str(Path(c.run_dir).resolve()) for c in cfgs]
    if len(set(dirs)) != len(dirs):
        raise ConfigError("Two runs of the group would share one run directory; use {seed} "
                          "in --run-dir or give a parent directory.")


class Member:
    """One seed's run of a group, as `Callback`s see it (in place of a Trainer)."""

    def __init__(self, group: "GroupRunner", index: int):
        self.group, self.index = group, index
        self.cfg = group.cfgs[index]
        self.run_dir = group.run_dirs[index]
        self.policy = group.policy

    @property
    def iteration(self) -> int:
        return self.group.iteration

    @property
    def global_step(self) -> int:
        return self.group.global_step

    @property
    def num_iterations(self) -> int:
        return self.cfg.num_iterations

    @property
    def state(self):
        """This seed's learner state (TrainState)."""
        k, j = self.group.locate(self.index)
        return jax.tree.map(lambda x: x[j], self.group.shards[k].train)


class GroupRunner:
    """Trains `cfgs` (one per seed; `check_group` holds) as one vmapped, jitted loop."""

    def __init__(self, cfgs: Sequence[TrainConfig], callbacks: Sequence[Callback] = (),
                 layout: Sequence[Program] | None = None):
        """`layout`: how the seeds run over the process's CPU devices (`seed_layout`'s, by
        default)."""
        self.hang_seconds = hang_seconds()  # a bad $MCPO_HANG_SECONDS fails before any work
        self.cfgs = list(cfgs)
        self.cfg = cfg = self.cfgs[0]
        self.G = len(self.cfgs)
        self.run_dirs = [Path(c.run_dir) for c in self.cfgs]
        self.callbacks = list(callbacks)
        self.env = make_jax_env(cfg.backend, cfg.env_id)
        self.policy = make_policy(self.env.observation_space, self.env.action_space,
                                  cfg.hidden_sizes, self.env.network_kind)
        self.success = env_family(cfg.env_id) == "minigrid"
        self.episode_columns = EPISODE_COLUMNS + (SUCCESS_COLUMNS if self.success else ())
        # The seeds are split over the process's devices (mcpo.xla_threads.split_devices: one
        # CPU device per core in `mcpo train`) into programs (`seed_layout`), all dispatched
        # at once, each on its device; a process with one device runs the whole group as one
        # program. A program of one seed is not vmapped, so the update's lax.cond stays a
        # branch and MCPO's slot cache applies (mcpo.algos.mcpo.caches_slots); its state
        # keeps a leading seed axis of 1.
        all_devices = jax.devices()
        self.layout = list(layout) if layout is not None else seed_layout(self.G,
                                                                           len(all_devices))
        if ([i for p in self.layout for i in range(p.a, p.b)] != list(range(self.G))
                or any(p.device is not None and not 0 <= p.device < len(all_devices)
                       for p in self.layout)):
            raise ValueError(f"not a layout of {self.G} seeds over {len(all_devices)} "
                             f"devices: {self.layout}")
        self.bounds = [(p.a, p.b) for p in self.layout]
        self.all_devices = all_devices
        # each program's device (a floating seed's: where it starts and is restored to)
        self.devices = [all_devices[p.device_index(1, len(all_devices))] for p in self.layout]
        self.loops = {batched: Loop(cfg, ALGOS[cfg.algo], self.policy, self.env,
                                    RECENT_EPISODES, success=self.success, batched=batched)
                      for batched in sorted({p.batched for p in self.layout})}
        self.loop = next(iter(self.loops.values()))  # init and the state's structure: any
        keys = jnp.stack([jax.random.PRNGKey(c.seed) for c in self.cfgs])
        init = {batched: jax.jit(_over_seeds(batched)(loop.init))
                for batched, loop in self.loops.items()}
        # jit compiles each kind of program once per device that runs it (the executable is
        # bound to its device; see docs/design.md §3.1 for why it is not loaded on the others)
        self._steps = {batched: jax.jit(_over_seeds(batched)(loop.iteration))
                       for batched, loop in self.loops.items()}
        self.shards: list[LoopState] = [init[p.batched](jax.device_put(keys[p.a:p.b], d))
                                        for p, d in zip(self.layout, self.devices)]
        self.members = [Member(self, i) for i in range(self.G)]
        self.iteration = 0
        self.global_step = 0
        self.wall_time = [0.0] * self.G
        self.saved_iteration = -1
        self.saved_snapshot: tuple[int, str] | None = None
        self.loggers: list[MetricsLogger] = []
        self._stop_signal = None
        self._stop_requested = False

    # The group's state over its devices ----------------------------------------------------
    @property
    def state(self) -> LoopState:
        """Every seed's state, stacked (on the device of a one-device group; else on the host,
        as numpy arrays)."""
        if len(self.shards) == 1:
            return self.shards[0]
        return _concat(jax.device_get(self.shards))

    @state.setter
    def state(self, stacked: LoopState) -> None:
        self.shards = [jax.device_put(jax.tree.map(lambda x: x[a:b], stacked), d)
                       if len(self.bounds) > 1 else stacked
                       for (a, b), d in zip(self.bounds, self.devices)]

    def state_on_devices(self) -> list[LoopState]:
        """The programs' states, each on its program's own device (a floating seed's state
        may have been left on another by its last iteration)."""
        return [jax.device_put(s, d) for s, d in zip(self.shards, self.devices)]

    def locate(self, index: int) -> tuple[int, int]:
        """(shard, position in it) of seed number `index` of the group."""
        for k, (a, b) in enumerate(self.bounds):
            if a <= index < b:
                return k, index - a
        raise IndexError(index)

    def functions(self, k: int) -> tuple[Loop, object]:
        """Program k's Loop and how it runs over the program's seeds (vmap, or one seed's
        own functions)."""
        batched = self.layout[k].batched
        return self.loops[batched], _over_seeds(batched)

    def step_function(self, k: int):
        """Program k's jitted iteration (of its shard's state, on the device holding it)."""
        return self._steps[self.layout[k].batched]

    @property
    def depth(self) -> int:
        """Iterations kept in flight: 2 with floating seeds (so that no device waits for the
        one a floating seed ran on before), else 1."""
        return 2 if any(p.device is None for p in self.layout) else 1

    def device_at(self, k: int, t: int):
        """The device on which program k runs iteration t (1-based)."""
        return self.all_devices[self.layout[k].device_index(t, len(self.all_devices))]

    def iterate(self, shards: Sequence[LoopState], t: int) -> list[tuple[LoopState, dict]]:
        """Iteration t (1-based) of every program, dispatched at once (JAX runs them
        asynchronously, each on its device; a floating seed's state is moved to its device of
        iteration t first, a copy that waits for the iteration before it)."""
        return [self.step_function(k)(s if self.layout[k].device is not None
                                      else jax.device_put(s, self.device_at(k, t)))
                for k, s in enumerate(shards)]

    def layout_record(self) -> list[dict]:
        """The programs, for the run directories' history: each one's seeds and device (a
        CPU device's index, or "rotating": a floating seed)."""
        return [{"seeds": [c.seed for c in self.cfgs[p.a:p.b]],
                 "device": p.device if p.device is not None else "rotating"}
                for p in self.layout]

    # Checkpoints ---------------------------------------------------------------------------
    def save(self, name: str = LATEST) -> None:
        """Write checkpoint `name` of every run of the group (one device->host copy)."""
        host = jax.device_get(self.state)
        for i, (cfg, d) in enumerate(zip(self.cfgs, self.run_dirs)):
            s = jax.tree.map(lambda x: np.asarray(x[i]), host)
            norm = {}
            if s.obs_rms is not None:
                norm["obs_rms"] = to_state_dict(s.obs_rms)
            if s.ret_rms is not None:
                norm["ret_rms"] = to_state_dict(s.ret_rms)
            arrays = {**flatten(s.train, "state"), **flatten(norm, "host"),
                      **flatten({"env": s.env, "log": s.log}, "jax")}
            meta = {"format": CHECKPOINT_FORMAT, "algo": cfg.algo, "backend": cfg.backend,
                    "iteration": self.iteration, "global_step": self.global_step,
                    "episodes": int(s.log.count), "lost_episodes": 0,
                    "recent_returns": recent_in_order(s.log),
                    "csv_rows": self.loggers[i].rows if self.loggers else 0,
                    "wall_time": self.wall_time[i], "config": cfg.to_dict(),
                    "group_size": self.G}
            save_checkpoint(d / CKPT_DIR / name, arrays, meta)
        if name == LATEST:
            self.saved_iteration = self.iteration
        else:
            self.saved_snapshot = (self.iteration, name)

    def load(self, loaded: Sequence[tuple[dict, dict]], paths: Sequence[Path]) -> None:
        """Restore every run's state from its (arrays, meta) (checked by the caller to be at
        one step) and stack them."""
        template = jax.eval_shape(self.loop.init, jax.random.PRNGKey(0))
        states = []
        for (arrays, meta), path, cfg in zip(loaded, paths, self.cfgs):
            src = str(path)
            if meta.get("backend", "gymnasium") != cfg.backend:
                raise CheckpointError(f"Checkpoint {path} was written by --backend "
                                      f"{meta.get('backend', 'gymnasium')}, the run's config "
                                      f"says --backend {cfg.backend}.")
            train = restore(template.train, arrays, "state", src)
            norm_t = {}
            if template.obs_rms is not None:
                norm_t["obs_rms"] = to_state_dict(jax.tree.map(_zeros, template.obs_rms))
            if template.ret_rms is not None:
                norm_t["ret_rms"] = to_state_dict(jax.tree.map(_zeros, template.ret_rms))
            norm = restore(norm_t, arrays, "host", src)
            rest = restore({"env": template.env, "log": template.log}, arrays, "jax", src)
            states.append(LoopState(
                train=train, env=rest["env"], log=rest["log"],
                obs_rms=from_state_dict(norm["obs_rms"]) if "obs_rms" in norm else None,
                ret_rms=from_state_dict(norm["ret_rms"]) if "ret_rms" in norm else None))
        self.state = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
                                  *states)
        meta = loaded[0][1]
        self.iteration = int(meta["iteration"])
        self.global_step = int(meta["global_step"])
        self.wall_time = [float(m["wall_time"]) for _, m in loaded]
        self.saved_iteration = self.iteration

    # Checks --------------------------------------------------------------------------------
    def _runs(self, idx: Sequence[int]) -> str:
        return _SEP.join(f"{self.run_dirs[i]} (seed {self.cfgs[i].seed})" for i in idx)

    def _ckpt_note(self) -> str:
        return checkpoint_note(self.saved_iteration, self.saved_snapshot, self.run_dirs)

    def _check_finite(self, m: dict) -> None:
        checks = [(name, np.asarray(ok)) for name, ok in m["finite"].items()]
        checks += [(f"the {k}", np.isfinite(v).reshape(self.G, -1).all(axis=1))
                   for k, v in m["stats"].items()
                   if np.issubdtype(np.asarray(v).dtype, np.floating)
                   and k != "explained_variance"]
        for name, ok in checks:
            bad = [i for i in range(self.G) if not ok[i]]
            if bad:
                raise NonFiniteError(
                    f"Non-finite value (NaN or Inf) in {name} at iteration "
                    f"{self.iteration + 1} (global step {self.global_step + self.cfg.batch_size})"
                    f" of {self._runs(bad)}. The run{'s' if self.G > 1 else ''} stopped; "
                    f"{self._ckpt_note()}")

    # The loop ------------------------------------------------------------------------------
    def _notify(self, hook: str, *per_member) -> None:
        for i, member in enumerate(self.members):
            extra = [a[i] for a in per_member]
            for cb in self.callbacks:
                if getattr(cb, hook)(member, *extra) is False:
                    self._stop_requested = True

    def _record_signal(self, signum) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def run(self, *, resumed_metas: Sequence[dict] | None = None) -> list[RunResult]:
        cfg, G = self.cfg, self.G
        self.loggers = [MetricsLogger(d, cfg.tensorboard,
                                      keep_rows=resumed_metas[i]["csv_rows"] if resumed_metas
                                      else None,
                                      # TensorBoard drops events from purge_step on
                                      purge_step=self.global_step + 1 if resumed_metas
                                      else None,
                                      last_iteration=self.iteration)
                        for i, d in enumerate(self.run_dirs)]
        old_handlers = install_stop_handlers(self._record_signal)
        seeds = f"{G} seeds" if G > 1 else f"seed {cfg.seed}"
        bar = tqdm(total=cfg.num_iterations * cfg.batch_size * G,
                   initial=self.global_step * G, unit="step", unit_scale=True,
                   dynamic_ncols=True, disable=not cfg.progress, smoothing=0.3,
                   desc=f"{cfg.algo} {cfg.env_id} ({cfg.backend}, {seeds})")
        t_start, steps_start = time.perf_counter(), self.global_step
        try:
            # The watchdog also covers the final save and evaluation (JAX programs of their
            # own, which can deadlock like an iteration).
            with hang_guard(self.run_dirs, self.hang_seconds):
                try:
                    self._notify("on_train_start")
                    self._loop(bar)
                finally:
                    bar.close()
                if self.saved_iteration != self.iteration:
                    self.save()
                if self._stop_signal is not None:
                    raise TrainingInterrupted(self._stop_signal,
                                              " ".join(str(d) for d in self.run_dirs),
                                              self.global_step)
                results = self._finish(time.perf_counter() - t_start,
                                       self.global_step - steps_start)
            self._notify("on_train_end", results)
            return results
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            self.close()

    def _go_on(self) -> bool:
        return (self.iteration < self.cfg.num_iterations and not self._stop_requested
                and self._stop_signal is None)

    def _loop(self, bar) -> None:
        """Iterations, pipelined: iteration i+1 is dispatched (JAX runs it asynchronously) as
        soon as iteration i's results are in -- with floating seeds (`seed_layout`), i+2 as
        well, so that no device waits for the one a floating seed ran on before -- and the
        host writes i's logs and checkpoints while they compute. Nothing dispatched is kept
        unless it is committed in turn: a stop (a callback, a signal, a NaN in i) discards
        it, so the runs' states, files and the order of the callbacks are those of a plain
        sequential loop."""
        if not self._go_on():
            return
        self._notify("before_iteration")
        if self._stop_requested:
            return
        pending: deque = deque()  # dispatched iterations, oldest first: per program (state, m)
        frontier, t_next = self.shards, self.iteration + 1  # what the next dispatch starts from

        def dispatch_ahead():
            nonlocal frontier, t_next
            while (len(pending) < self.depth and t_next <= self.cfg.num_iterations
                   and self._stop_signal is None):
                pending.append(self.iterate(frontier, t_next))  # speculative until committed
                frontier = [s for s, _ in pending[-1]]
                t_next += 1

        t_last = time.perf_counter()
        dispatch_ahead()
        while pending:
            done = pending.popleft()
            shards = [s for s, _ in done]
            m = _concat(jax.device_get([m for _, m in done]))
            t_now = time.perf_counter()
            self._check_finite(m)
            dispatch_ahead()
            self._commit(shards, m, t_now - t_last, bar)
            t_last = t_now
            if not self._go_on():
                return
            self._notify("before_iteration")
            if self._stop_requested:
                return

    def _commit(self, shards: list[LoopState], m: dict, dt: float, bar) -> None:
        """Make iteration `self.iteration + 1` (its state, per shard, and metrics `m`, `dt` s of
        wall time) the runs' own: metrics rows, callbacks, checkpoints."""
        cfg, G = self.cfg, self.G
        self.shards = shards
        self.iteration += 1
        self.global_step += cfg.batch_size
        rows = []
        for i in range(G):
            self.wall_time[i] += dt
            ep = {k: np.asarray(m["episodes"][k][i]).item() for k in self.episode_columns}
            rows.append({"iteration": self.iteration, "global_step": self.global_step,
                         "wall_time": self.wall_time[i], "sps": cfg.batch_size / dt,
                         "rollout_time": math.nan, "update_time": math.nan, **ep,
                         "learning_rate": learning_rate_at(cfg, int(m["n_updates"][i])),
                         **{k: v[i] for k, v in m["stats"].items()}})
        self._notify("on_iteration", rows)
        for logger, row in zip(self.loggers, rows):
            logger.log(row, self.global_step)
        recent = [r["recent_return"] for r in rows if not math.isnan(r["recent_return"])]
        if recent:
            bar.set_postfix_str(f"sps={G * cfg.batch_size / dt:,.0f} "
                                f"return={np.mean(recent):.1f}", refresh=False)
        bar.update(cfg.batch_size * G)
        if self.iteration % cfg.checkpoint_every == 0:
            self.save()
        if crossed_snapshot(cfg.snapshots, cfg.num_iterations * cfg.batch_size,
                            self.global_step, cfg.batch_size):
            self.save(snapshot_name(self.global_step))

    def evaluate(self, episodes: int, deterministic: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(G, episodes) raw returns and successes of every seed's current policy on fresh
        envs."""
        run = make_evaluate(self.env, self.policy, self.cfg.clip_obs, episodes, deterministic)
        stream = EVAL_STREAM if deterministic else EVAL_STREAM + 1
        keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(c.seed), stream)
                          for c in self.cfgs])
        run = jax.jit(jax.vmap(run))
        out = [run(s.train.params["actor"], s.obs_rms, jax.device_put(keys[a:b], d))
               for s, (a, b), d in zip(self.state_on_devices(), self.bounds, self.devices)]
        rets, succ = _concat(jax.device_get(out))
        return np.asarray(rets), np.asarray(succ)

    def _finish(self, elapsed: float, steps: int) -> list[RunResult]:
        cfg, nan = self.cfg, math.nan
        complete = not self._stop_requested
        ev = {}  # deterministic? -> (G, episodes) returns, successes (as the Gymnasium trainer)
        if cfg.eval_episodes and complete:
            for det in EVAL_DETERMINISTIC[cfg.eval_mode]:
                ev[det] = self.evaluate(cfg.eval_episodes, det)
        log = jax.device_get(self.state.log)

        def stat(det, i, reduce, of_success=False):
            """reduce() of seed i's evaluation returns (or successes) of mode det; nan if
            that evaluation did not run (or the env has no successes)."""
            if det not in ev or (of_success and not self.success):
                return nan
            return float(reduce(ev[det][1 if of_success else 0][i]))

        results = []
        for i, (c, d) in enumerate(zip(self.cfgs, self.run_dirs)):
            own = jax.tree.map(lambda x: x[i], log)
            recent = recent_in_order(own)
            successes = recent_in_order(own, "success") if self.success else []
            if steps > 0 and elapsed > 0:
                sps = steps / elapsed
            else:
                sps = self.global_step / self.wall_time[i] if self.wall_time[i] > 0 else math.nan
            result = RunResult(
                run_dir=str(d), algo=c.algo, env_id=c.env_id, seed=c.seed,
                global_step=self.global_step, iterations=self.iteration,
                episodes=int(log.count[i]),
                final_return=float(np.mean(recent)) if recent else nan,
                eval_return_mean=stat(True, i, np.mean), eval_return_std=stat(True, i, np.std),
                sps=sps, wall_time=self.wall_time[i], complete=complete,
                eval_sampled_return_mean=stat(False, i, np.mean),
                eval_sampled_return_std=stat(False, i, np.std),
                final_success_rate=float(np.mean(successes)) if successes else nan,
                eval_success_rate=stat(True, i, np.mean, of_success=True),
                eval_sampled_success_rate=stat(False, i, np.mean, of_success=True))
            if complete:
                write_result(d, result)
            results.append(result)
        return results

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
        self.loggers = []


def _zeros(x):
    return np.zeros(x.shape, x.dtype)


def shard_bounds(G: int, devices: int) -> list[tuple[int, int]]:
    """Seeds [a, b) of each shard: G seeds over at most `devices` shards, the first ones one
    seed larger when they do not divide (5 over 2: [0, 3), [3, 5))."""
    n = max(1, min(G, devices))
    sizes = [G // n + (k < G % n) for k in range(n)]
    starts = np.cumsum([0] + sizes)
    return [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


class Program(NamedTuple):
    """Seeds [a, b) of a group, run as one jitted program: vmapped over them, or (one seed)
    that seed's own functions. `device`: the index of the CPU device it runs on, or None for
    a floating seed, which runs iteration t on device (t - 1 + turn) % devices."""
    a: int
    b: int
    device: int | None
    turn: int = 0

    @property
    def batched(self) -> bool:
        """Whether the program is vmapped (more than one seed)."""
        return self.b - self.a > 1

    def device_index(self, t: int, devices: int) -> int:
        """The index of the device that runs iteration t (1-based) of this program."""
        return self.device if self.device is not None else (t - 1 + self.turn) % devices


def seed_layout(G: int, devices: int) -> list[Program]:
    """How a group of G seeds runs over `devices` CPU devices. When the devices divide the
    seeds (or there are no more seeds than devices), one program per device with an equal
    share (4 over 2: 2 + 2). Otherwise each device gets G // devices seeds and the G % devices
    left over float, one program of one seed each, moving to the next device at each
    iteration: over `devices` iterations every device does the same work (5 over 2: 2 + 2 and
    one seed alternating; 3 over 2: 1 + 1 and one alternating) instead of one device waiting
    for the other every iteration (3 + 2). A floating seed runs the same compiled one-seed
    program whatever the device (identical CPU devices), so its numbers are those of that
    seed trained alone; docs/design.md §3.1 has the measurements."""
    if G <= devices or G % devices == 0:
        return [Program(a, b, k) for k, (a, b) in enumerate(shard_bounds(G, devices))]
    q, r = divmod(G, devices)
    return ([Program(k * q, (k + 1) * q, k) for k in range(devices)]
            + [Program(devices * q + j, devices * q + j + 1, None, j) for j in range(r)])


def _over_seeds(batched: bool):
    """How a program's function runs over its seeds: vmapped, or one seed's own."""
    return jax.vmap if batched else _one_seed


def _one_seed(fn):
    """`fn` of one seed, called as its vmap over a group of one would be: leading axis 1 on
    every input and output leaf (squeezed and restored, free inside jit)."""
    def f(*xs):
        return jax.tree.map(lambda a: a[None], fn(*jax.tree.map(lambda a: a[0], xs)))
    return f


def _concat(parts: list):
    """Per-shard host trees (leading axis: the shard's seeds) -> one tree for the group."""
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *parts)


# ---------------------------------------------------------------------------------------------
# The hang watchdog's side (mcpo.watchdog; docs/design.md §3.1)
# ---------------------------------------------------------------------------------------------
def hang_guard(run_dirs: Sequence[Path], seconds: float | None = None) -> HangWatchdog:
    """`with hang_guard(dirs): ...` — a group's JAX work (building and compiling it, loading a
    checkpoint, the iterations, the final save and evaluation), watched for XLA's CPU
    deadlock: if it hangs, the training starts again in place of this process (`_after_hang`),
    or the process exits with EXIT_HUNG and says how to go on."""
    seconds = hang_seconds() if seconds is None else seconds
    return HangWatchdog(seconds, _hang_message(seconds),
                        on_hang=lambda: _after_hang([Path(d) for d in run_dirs]))


def _hang_message(seconds: float) -> str:
    return (f"\nmcpo: no progress and no CPU use for {seconds:g} s: XLA's CPU "
            f"runtime has deadlocked (the known cause, batched LAPACK calls in vmapped "
            f"seeds, is avoided; docs/design.md §3.1 shows how to take the native stacks "
            f"that would find this one). Nothing written is lost: each run directory keeps "
            f"its last checkpoint.")


def _retry_command(run_dirs: Sequence[Path]) -> list[str] | None:
    """What `mcpo` runs again after a hang, when this process is a CLI training
    (`watchdog.RETRY_ARGV`) with restarts left: a --resume command runs as it was; else the
    group resumes from its checkpoints if every member has one, or, if none has one yet,
    the original command runs again with --overwrite (its run directories then hold only
    this process's own start: without --overwrite, `mcpo train` refuses directories that
    hold anything). None when members disagree (not produced by a group)."""
    argv = watchdog.RETRY_ARGV
    if argv is None or hang_retries() <= 0:
        return None
    if any(a == "--resume" or a.startswith("--resume=") for a in argv):
        return list(argv)
    have = [(d / CKPT_DIR / LATEST).is_file() for d in run_dirs]
    if all(have):
        keep = [a for a in argv if a in ("--progress", "--no-progress")]
        return ["train", "--resume", *(str(d) for d in run_dirs), *keep]
    if not any(have):
        return list(argv) + ([] if "--overwrite" in argv else ["--overwrite"])
    return None


def _after_hang(run_dirs: Sequence[Path]) -> None:
    """The watchdog's `on_hang`: start the training again in place of this process, or
    say how to, before the watchdog exits with EXIT_HUNG."""
    cmd = _retry_command(run_dirs)
    if cmd is not None:
        restart(cmd)
    dirs = " ".join(str(d) for d in run_dirs)
    sys.stderr.write(
        f"mcpo: stopped with exit code {EXIT_HUNG}. Run again: `mcpo train --resume {dirs}` "
        f"(a run without a checkpoint yet: the same `mcpo train` command with --overwrite), "
        f"or rerun the sweep. ${{MCPO_HANG_SECONDS}} sets the limit (0: no watchdog); "
        f"`mcpo train` starts a hung group again by itself ${{MCPO_HANG_RETRIES}} times "
        f"(default 2).\n")


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def train_group(cfgs: Sequence[TrainConfig], *, overwrite: bool = False,
                callbacks: Sequence[Callback] = (), command: list[str] | None = None
                ) -> list[RunResult]:
    """Validate, create one run directory per config and train them as one vmapped group.
    Everything is checked before any directory is created."""
    cfgs = [c.validate() for c in cfgs]
    check_group(cfgs)
    xla_threads.split_devices(xla_threads.devices_requested(len(cfgs)))
    prepare_jax()
    for c in cfgs:
        check_new(Path(c.run_dir), overwrite)
    with hang_guard([Path(c.run_dir) for c in cfgs]):  # init compiles and runs JAX code
        runner = GroupRunner(cfgs, callbacks)
    with contextlib.ExitStack() as stack:
        for c in cfgs:
            rd = stack.enter_context(RunDir.create(Path(c.run_dir), c, overwrite,
                                                   command=command))
            if len(cfgs) > 1:
                rd.record("group", seeds=[x.seed for x in cfgs],
                          runs=[str(x.run_dir) for x in cfgs],
                          programs=runner.layout_record())
        return runner.run()


def resume_group(run_dirs: Sequence, total_timesteps: int | None = None, *,
                 resume_from: str | None = None, progress: bool | None = None,
                 callbacks: Sequence[Callback] = ()) -> list[RunResult]:
    """Continue runs of a JAX backend together from their checkpoints (latest.ckpt, or the
    snapshot `resume_from` of each), optionally with a new budget."""
    dirs = [Path(d) for d in run_dirs]
    with contextlib.ExitStack() as stack:
        rds = [stack.enter_context(RunDir.open(d)) for d in dirs]  # locks first
        cfgs = [rd.read_config() for rd in rds]
        check_group(cfgs)
        ckpts = [find_checkpoint(d, resume_from) for d in dirs]
        loaded = [load_checkpoint(p) for p in ckpts]
        for (_, meta), p, c in zip(loaded, ckpts, cfgs):
            check_checkpoint_meta(meta, p, c.algo)
        done = [int(meta["global_step"]) for _, meta in loaded]
        if len(set(done)) > 1:
            at = _SEP.join(f"{p} at step {n:,}" for p, n in zip(ckpts, done))
            raise ConfigError(f"The runs' checkpoints are at different steps ({at}), so they "
                              f"cannot continue as one group; resume them one by one.")
        news = [resumed_config(c, total_timesteps, progress, n, p)
                for c, n, p in zip(cfgs, done, ckpts)]
        xla_threads.split_devices(xla_threads.devices_requested(len(cfgs)))
        prepare_jax()
        recorded = [recorded_result(d, c, n_, n, resume_from)
                    for d, c, n_, n in zip(dirs, cfgs, news, done)]
        if all(r is not None for r in recorded):
            return recorded
        with hang_guard(dirs):  # init compiles and runs JAX code, load stacks arrays
            runner = GroupRunner(news, callbacks)
            runner.load(loaded, ckpts)
        for rd, c, n_, n, p in zip(rds, cfgs, news, done, ckpts):
            record_resume(rd, c, n_, n, p, resume_from)
        return runner.run(resumed_metas=[meta for _, meta in loaded])
