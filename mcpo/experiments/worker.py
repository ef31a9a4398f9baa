"""One run of a sweep, as a worker does it: skip it if it has finished, resume it if it has a
checkpoint, else train it; a failure is recorded in the run directory's error.txt and
returned, never raised. The local pool's worker processes (`serve`) and Ray's worker
processes both call `run_job` with the same job, in a process with the same one-thread
settings, so a run gives the same numbers on either backend.

A job is JSON: {"name", "run_dir", "config" (TrainConfig.to_dict()), "command", "imports",
"track" (W&B settings or null), "parent_pid" (stop when that process dies, or null)}.
An outcome is JSON: {"name", "status": done | skipped | failed | interrupted | busy,
"how": new | resumed | skipped, "exit_code", "error", "steps" (env steps trained now),
"wall_time" (s), "host", "final_return"}.

A group job (pure-JAX backends: the seeds of one setting trained together, vmapped, in one
process) is {"name" (its first run's), "members": [jobs], "command", "imports",
"parent_pid"}; its outcome is {"name", "status", "members": [outcomes, one per member]}.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path

from mcpo.checkpoint import atomic_write_bytes
from mcpo.config import TrainConfig
from mcpo.rundir import ERROR, RESULT, find_checkpoint, is_run_dir, read_config, snapshots
from mcpo.tracking import WandbCallback
from mcpo.api import resume, train
from mcpo.jaxenv.runner import train_group
from mcpo.trainer import Callback, TrainingInterrupted
from mcpo.types import CheckpointError, MCPOError, RunDirBusy

# One thread per worker: the pool runs one process per core, so intra-op threads only fight
# (set before the worker's interpreter starts, i.e. before JAX, NumPy's BLAS and OpenMP load).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
XLA_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
# A local-pool worker's CPU (`worker_cpus`): the worker pins itself to it before JAX starts.
WORKER_CPU_ENV = "MCPO_WORKER_CPU"
# Config fields that may differ between the sweep's config and a run directory's own.
_NOT_COMPARED = ("run_dir", "progress")


def thread_env_vars(base: dict | None = None) -> dict:
    """The variables a worker process gets on top of `base` (default os.environ): the
    one-thread settings; XLA_FLAGS keeps the flags the user set."""
    base = os.environ if base is None else base
    user = base.get("XLA_FLAGS", "")
    xla = user if "xla_cpu_multi_thread_eigen" in user else f"{user} {XLA_THREAD_FLAGS}"
    return {**THREAD_ENV, "XLA_FLAGS": xla.strip()}


def worker_env(base: dict | None = None) -> dict:
    """The whole environment of a worker process."""
    env = dict(os.environ if base is None else base)
    env.update(thread_env_vars(env))
    return env


def worker_cpus(workers: int) -> list[int] | None:
    """One CPU per local worker when there are exactly as many workers as CPUs this process
    may use (the default `--workers`), else None: not pinned. Pinned, each one-thread worker
    keeps its core: MCPO's 5 gymnax Pendulum seeds x 1M as groups of 3 + 2 over two workers
    took 156 s instead of 175 s (steady: 8.0k and 11.7k steps/s per seed instead of 6.3k and
    9.0k), with identical metrics (benchmarks/RESULTS.md §5.5). Fewer workers than CPUs stay
    unpinned, so two such sweeps on one machine cannot end up on the same cores while others
    idle."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None
    return cpus if workers == len(cpus) and workers > 1 else None


def pin_to_worker_cpu() -> None:
    """Pin this process to $MCPO_WORKER_CPU (set by the local pool), if set and allowed."""
    cpu = os.environ.get(WORKER_CPU_ENV)
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {int(cpu)})
    except (AttributeError, ValueError, OSError):
        pass  # not Linux, or the CPU is gone: run unpinned


class StopWhenOrphaned(Callback):
    """Stop (with a checkpoint) when the sweep that started this worker has died, so a killed
    sweep's runs do not train on unwatched (and a re-run finds them resumable, not busy)."""

    def __init__(self, parent_pid: int):
        self.parent_pid = parent_pid

    def before_iteration(self, trainer):
        return False if os.getppid() != self.parent_pid else None


class StepCounter(Callback):
    """Env steps trained by this process."""

    def __init__(self):
        self.start = self.end = None

    def on_train_start(self, trainer):
        self.start = self.end = trainer.global_step

    def on_iteration(self, trainer, row):
        self.end = trainer.global_step

    @property
    def steps(self) -> int:
        return 0 if self.start is None else self.end - self.start


def _config_difference(a: TrainConfig, b: TrainConfig) -> str | None:
    da, db = a.to_dict(), b.to_dict()
    for k in da:
        if k in _NOT_COMPARED:
            continue
        if da[k] != db.get(k):
            return f"{k}: {db.get(k)!r} there, {da[k]!r} in the sweep"
    return None


def _write_error(run_dir: Path, text: str) -> None:
    try:
        atomic_write_bytes(run_dir / ERROR, text.encode())
    except OSError:
        pass  # the outcome still carries the error


def _new_outcome(name: str) -> dict:
    return {"name": name, "status": "failed", "how": "new", "exit_code": 1, "error": None,
            "steps": 0, "wall_time": 0.0, "host": socket.gethostname(), "final_return": None}


def _trained(result) -> dict:
    """An outcome's fields from a RunResult."""
    return dict(status="done" if result.complete else "interrupted",
                exit_code=0 if result.complete else 1, final_return=result.final_return)


def _failure(e: BaseException) -> dict:
    """An outcome's fields for an exception: busy, interrupted or failed."""
    if isinstance(e, RunDirBusy):
        return dict(status="busy", exit_code=e.exit_code, error=str(e))
    if isinstance(e, TrainingInterrupted):
        return dict(status="interrupted", exit_code=e.exit_code, error=str(e))
    if isinstance(e, MCPOError):
        return dict(status="failed", exit_code=e.exit_code, error=str(e))
    return dict(status="failed", exit_code=1,
                error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")


def _record_failure(run_dir: Path, out: dict) -> None:
    """A failed run's error, in its run directory (if it got one)."""
    if out["status"] == "failed" and is_run_dir(run_dir):
        _write_error(run_dir, f"{time.strftime('%Y-%m-%d %H:%M:%S')} on {out['host']}, exit "
                              f"code {out['exit_code']}\n{out['error']}\n")


def run_job(job: dict) -> dict:
    if "members" in job:
        return run_group_job(job)
    t0 = time.time()
    run_dir = Path(job["run_dir"])
    out = _new_outcome(job["name"])
    counter = StepCounter()
    callbacks: list = [counter]
    tracker = None
    try:
        for mod in job.get("imports") or ():
            importlib.import_module(mod)
        if (run_dir / RESULT).is_file():
            out.update(status="skipped", how="skipped", exit_code=0)
            return out
        cfg = TrainConfig.from_dict(job["config"], strict=True)
        if job.get("parent_pid"):
            callbacks.append(StopWhenOrphaned(job["parent_pid"]))
        if job.get("track"):
            tracker = WandbCallback(**job["track"])
            callbacks.append(tracker)
        resumable = False
        if is_run_dir(run_dir):
            diff = _config_difference(cfg, read_config(run_dir))
            if diff is not None:
                raise MCPOError(f"{run_dir} holds a run with another config ({diff}); it is "
                                f"left as it is: move it away, or sweep into another --out.")
            try:
                find_checkpoint(run_dir)
                resumable, resume_from = True, None
            except CheckpointError:
                snaps = snapshots(run_dir)
                if snaps:  # latest.ckpt lost: continue from the newest snapshot
                    resumable, resume_from = True, snaps[-1].name
        if resumable:
            out["how"] = "resumed"
            result = resume(run_dir, resume_from=resume_from, callbacks=callbacks)
        else:  # new, or a run directory that stopped before its first checkpoint
            result = train(cfg, overwrite=is_run_dir(run_dir), callbacks=callbacks,
                           command=job.get("command"))
        out.update(_trained(result))
        if result.complete:
            (run_dir / ERROR).unlink(missing_ok=True)
    except Exception as e:  # noqa: BLE001 - a worker reports, the sweep goes on
        out.update(_failure(e))
    finally:
        if tracker is not None:
            tracker.finish(0 if out["status"] == "done" else 1)
        out["steps"] = counter.steps
        out["wall_time"] = time.time() - t0
    _record_failure(run_dir, out)
    return out


def run_group_job(job: dict) -> dict:
    """Train the member runs (new ones, one config but for the seed; `train_group` refuses
    existing run directories before creating any) together in this process: one compiled,
    vmapped program, each run its own directory. A failure fails every member; their
    outcomes share the group's wall time, and each member's steps are its own."""
    t0 = time.time()
    members = job["members"]
    outs = [_new_outcome(m["name"]) for m in members]
    counter = StepCounter()
    callbacks: list = [counter]
    try:
        for mod in job.get("imports") or ():
            importlib.import_module(mod)
        cfgs = [TrainConfig.from_dict(m["config"], strict=True) for m in members]
        if job.get("parent_pid"):
            callbacks.append(StopWhenOrphaned(job["parent_pid"]))
        results = train_group(cfgs, callbacks=callbacks, command=job.get("command"))
        for o, r in zip(outs, results):
            o.update(_trained(r))
    except Exception as e:  # noqa: BLE001 - a worker reports, the sweep goes on
        fields = _failure(e)
        for o in outs:
            o.update(fields)
    for o, m in zip(outs, members):
        o["steps"] = counter.steps
        o["wall_time"] = time.time() - t0
        _record_failure(Path(m["run_dir"]), o)
    failed = [o for o in outs if o["status"] != "done"]
    return {"name": job["name"], "status": failed[0]["status"] if failed else "done",
            "exit_code": failed[0]["exit_code"] if failed else 0,
            "error": failed[0]["error"] if failed else None, "members": outs}


def _redirect_output(log: Path) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so JAX's and other
    libraries' output too) to `log`, appended."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(lines=None) -> int:
    """A local-pool worker (`python -m mcpo.experiments`, mcpo/experiments/__main__.py): one
    job per line on stdin, run in turn in this process (so JAX and the compiled programs are
    loaded once, as in a Ray worker); each run's output is appended to job["log"] and its
    outcome written to job["outcome"] (atomically: once the file exists it is complete).
    Exits at the end of stdin or on Ctrl-C between runs."""
    pin_to_worker_cpu()  # before the first JAX computation creates XLA's threads
    try:
        for line in (sys.stdin if lines is None else lines):
            if not line.strip():
                continue
            job = json.loads(line)
            _redirect_output(Path(job["log"]))
            print(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(job['command'])}",
                  flush=True)
            outcome = run_job({**job, "parent_pid": os.getppid()})
            if outcome["error"]:
                print(outcome["error"], file=sys.stderr, flush=True)
            atomic_write_bytes(Path(job["outcome"]), (json.dumps(outcome) + "\n").encode())
            if outcome["status"] == "interrupted" and outcome["exit_code"] >= 128:
                return outcome["exit_code"]  # stopped by a signal: the sweep is stopping
    except KeyboardInterrupt:
        return 130
    return 0
