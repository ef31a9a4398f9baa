"""Running a sweep: every run of a spec into one sweep directory, on a backend, with a live
view; re-running the same command skips finished runs and resumes unfinished ones."""

from __future__ import annotations

import json
import platform
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mcpo.experiments.backends import LocalPool, RayPool
from mcpo.xla_threads import usable_cores
from mcpo.experiments.progress import Progress, duration
from mcpo.experiments.spec import Run, Spec
from mcpo.experiments.sweepdir import SweepDir, check_out, now
from mcpo.jaxenv.registry import is_jax_backend
from mcpo.jaxenv.runner import PER_SEED, shard_bounds
from mcpo.provenance import mcpo_version
from mcpo.rundir import RESULT, find_checkpoint, is_run_dir, snapshots
from mcpo.types import CheckpointError, ConfigError

BACKENDS = ("local", "ray")


@dataclass
class SweepSummary:
    name: str
    out: str
    runs: int
    done: int = 0           # finished by this invocation
    resumed: int = 0        # of them, continued from a checkpoint
    skipped: int = 0        # had finished before
    failed: int = 0
    interrupted: int = 0
    steps: int = 0          # env steps trained by this invocation
    wall_time: float = 0.0
    backend: str = "local"
    workers: int = 1
    failures: dict = field(default_factory=dict)  # run name -> error

    @property
    def sps(self) -> float:
        return self.steps / self.wall_time if self.wall_time > 0 else 0.0

    def line(self) -> str:
        return (f"sweep {self.name}: {self.runs} runs: {self.done} done ({self.resumed} "
                f"resumed), {self.skipped} skipped (finished before), {self.failed} failed, "
                f"{self.interrupted} interrupted; {self.steps:,} env steps in "
                f"{duration(self.wall_time)} ({self.sps:,.0f} steps/s, {self.backend} "
                f"backend, {self.workers} workers); {self.out}")


def run_state(run: Run) -> str:
    """'finished', 'resumable' (has a checkpoint), 'started' (no checkpoint yet) or 'new'."""
    d = Path(run.config.run_dir)
    if (d / RESULT).is_file():
        return "finished"
    if not is_run_dir(d):
        return "new"
    try:
        find_checkpoint(d)
        return "resumable"
    except CheckpointError:
        return "resumable" if snapshots(d) else "started"


def job_of(run: Run, spec: Spec, track: dict | None) -> dict:
    return {"name": run.name, "run_dir": run.config.run_dir, "config": run.config.to_dict(),
            "command": run.train_command(), "imports": list(spec.imports), "track": track}


def group_seeds(jobs: list[dict], new: set[str], workers: int = 1) -> list[dict]:
    """On a pure-JAX backend the new runs of one setting (configs equal but for seed and run
    directory) become one group job, trained together in one process (vmapped); runs that
    already have a directory (resumable or started) stay single jobs and continue alone.
    W&B tracking keeps every run single (one W&B run per process).

    With fewer jobs than `workers`, groups are cut into consecutive chunks of their seeds
    (sizes as even as `shard_bounds` makes them, the biggest chunks cut first) until every
    worker has a job or every chunk is one seed: one setting x 5 seeds on 2 workers runs as
    3 + 2 seeds in two processes, not 5 in one while the other worker idles (what `mcpo
    train` does with one CPU device per core, docs/design.md 3.1)."""
    out, groups = [], {}
    for job in jobs:
        cfg = job["config"]
        if job["name"] not in new or job.get("track") or not is_jax_backend(cfg["backend"]):
            out.append(job)
            continue
        key = json.dumps({k: v for k, v in cfg.items() if k not in PER_SEED}, sort_keys=True)
        if key not in groups:
            groups[key] = []
            out.append(key)
        groups[key].append(job)
    chunks = {key: 1 for key in groups}
    while len(out) - len(groups) + sum(chunks.values()) < workers:
        # the group whose chunks are biggest, if any has a chunk of 2 seeds or more
        key = max(chunks, key=lambda k: -(-len(groups[k]) // chunks[k]), default=None)
        if key is None or chunks[key] >= len(groups[key]):
            break
        chunks[key] += 1
    result = []
    for job in out:
        if not isinstance(job, str):
            result.append(job)
            continue
        runs = groups[job]
        for a, b in shard_bounds(len(runs), chunks[job]):
            result.append(runs[a] if b - a == 1 else _group_job(runs[a:b]))
    return result


def _group_job(runs: list[dict]) -> dict:
    """One group job of `runs`; its provenance is the train command of the whole group."""
    cmd = list(runs[0]["command"])
    if "--seed" in cmd:
        i = cmd.index("--seed")
        cmd[i:i + 2] = ["--seeds", ",".join(str(m["config"]["seed"]) for m in runs)]
    return {"name": runs[0]["name"], "members": runs, "command": cmd,
            "imports": runs[0]["imports"], "track": None}


def members(job: dict) -> list[dict]:
    return job.get("members") or [job]


def check_backend(backend: str, workers: int | None, address: str | None,
                  pin: bool = True) -> None:
    """ConfigError for backend settings that do not go together (before anything is written)."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    if workers is not None and not 1 <= workers <= 4096:
        raise ConfigError(f"--workers must be from 1 to 4096; got {workers}.")
    if backend == "local" and address:
        raise ConfigError("--address is for --backend ray (the cluster to join).")
    if backend == "ray":
        if not pin:
            raise ConfigError("--no-pin is for --backend local (Ray places its own workers).")
        RayPool.check_available()


def make_backend(backend: str, workers: int | None, address: str | None, log_path,
                 pin: bool = True):
    """The pool for settings `check_backend` has accepted."""
    if backend == "local":
        return LocalPool(workers or usable_cores(), log_path, pin)
    return RayPool(workers, address, log_path)


def run_sweep(spec: Spec, out: Path | str, *, backend: str = "local",
              workers: int | None = None, address: str | None = None,
              track: dict | None = None, command: list[str] | None = None,
              scale: float = 1.0, stream=None, pin: bool = True) -> SweepSummary:
    """Run every run of `spec` (parsed with the same `out`) into the sweep directory `out`.
    Bad input raises ConfigError before anything is written; a second sweep on the same
    directory raises RunDirBusy. Failed runs are recorded and counted, never raised. `pin`:
    the local pool pins one worker per CPU when there are as many workers as CPUs."""
    out = Path(out)
    stream = stream if stream is not None else sys.stderr
    check_backend(backend, workers, address, pin)
    check_out(out)
    for run in spec.runs:
        if Path(run.config.run_dir).parent.resolve() != out.resolve():
            raise ConfigError(f"run {run.name} was named for another --out "
                              f"({Path(run.config.run_dir).parent}); parse the spec with "
                              f"out={out}.")
    with SweepDir(out) as sd:
        pool = make_backend(backend, workers, address, sd.log_path, pin)
        n_workers = getattr(pool, "workers", None) or usable_cores()
        summary = SweepSummary(spec.name, str(out), len(spec.runs), backend=backend,
                               workers=n_workers)
        inv = {"started": now(), "command": command or sys.argv, "source": spec.source,
               "name": spec.name, "scale": scale, "backend": backend, "workers": n_workers,
               "pinned_cpus": getattr(pool, "cpus", None),
               "address": address, "host": socket.gethostname(),
               "machine": f"{platform.platform()}, {usable_cores()} usable cores",
               "python": platform.python_version(), "mcpo_version": mcpo_version(),
               "runs": [r.name for r in spec.runs]}
        sd.data["name"] = spec.name
        sd.data["description"] = spec.description
        sd.data["invocations"].append(inv)
        by_name = {r.name: r for r in spec.runs}
        for r in spec.runs:
            rec = sd.data["runs"].setdefault(r.name, {"attempts": []})
            rec.update(r.describe())
            rec.setdefault("status", "pending")
        progress = Progress(spec.name, len(spec.runs), spec.total_timesteps, stream)
        jobs, new = [], set()
        for r in spec.runs:
            state = run_state(r)
            if state == "finished":
                summary.skipped += 1
                progress.skipped(None, r.total_timesteps)
                sd.data["runs"][r.name]["status"] = "done"
            else:
                jobs.append(job_of(r, spec, track))
                if state == "new":
                    new.add(r.name)
        jobs = group_seeds(jobs, new, n_workers)
        sd.save()

        def on_start(job):
            for m in members(job):
                rec = sd.data["runs"][m["name"]]
                rec["status"] = "running"
                rec["attempts"].append({"started": now()})
                progress.started(m)
            sd.save()

        def on_done(job, outcome):
            if "members" in job:  # a group: each member's outcome (or the group's for all)
                outs = outcome.get("members") or [{**outcome, "name": m["name"]}
                                                  for m in job["members"]]
                for m, o in zip(job["members"], outs):
                    on_done(m, o)
                return
            rec = sd.data["runs"][job["name"]]
            st = outcome["status"]
            rec["status"] = {"done": "done", "skipped": "done", "interrupted": "interrupted"}\
                .get(st, "failed")
            rec["error"] = outcome.get("error")
            att = rec["attempts"][-1] if rec["attempts"] else {}
            att.update(ended=now(), **{k: outcome.get(k) for k in
                                       ("status", "how", "exit_code", "steps", "wall_time",
                                        "host", "final_return")})
            sd.save()
            summary.steps += outcome.get("steps") or 0
            if st == "done":
                summary.done += 1
                summary.resumed += outcome.get("how") == "resumed"
            elif st == "skipped":
                summary.skipped += 1
            elif st == "interrupted":
                summary.interrupted += 1
            else:
                summary.failed += 1
                summary.failures[job["name"]] = outcome.get("error")
            progress.finished(job, outcome, by_name[job["name"]].total_timesteps)

        t0 = time.time()
        old = {}
        if threading.current_thread() is threading.main_thread():
            # SIGINT too: a sweep started in the background (`nohup ... &`, a script's `&`)
            # inherits SIGINT ignored, and then `kill -INT` stopped its workers' runs while
            # the sweep itself went on to the next ones.
            old = {sig: signal.signal(sig, _raise_interrupt)
                   for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if jobs:
                pool.run(jobs, on_start, on_done, progress.refresh)
        except KeyboardInterrupt:
            raise SweepInterrupted(summary) from None
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            summary.wall_time = time.time() - t0
            progress.close()
            inv.update(ended=now(), wall_time=summary.wall_time, steps=summary.steps,
                       counts={k: getattr(summary, k) for k in
                               ("done", "resumed", "skipped", "failed", "interrupted")})
            sd.save()
    return summary


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class SweepInterrupted(Exception):
    def __init__(self, summary: SweepSummary):
        super().__init__(summary.line())
        self.summary = summary
