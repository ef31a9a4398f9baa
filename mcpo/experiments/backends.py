"""Where a sweep's runs execute: a local pool of worker processes (the default) or Ray.

Both take the jobs (mcpo.experiments.worker), start at most `workers` at a time and report
each run's start and outcome to the sweep; both execute `worker.run_job`, in a process whose
environment holds the one-thread settings (worker.thread_env_vars), so a run gives the same
numbers on either.

* Local: `workers` worker processes (`python -m mcpo.experiments`; spawned, never forked, so
  no JAX state is inherited), each running runs one after another; a run's output is
  appended to DIR/logs/<run>.log. A worker that crashes (segfault, out of memory, killed)
  fails its run only and is replaced; one stopped by the hang watchdog (exit 75,
  mcpo.watchdog) is run again, up to HUNG_RETRIES times, a group's members each alone.
  Ctrl-C or SIGTERM reaches the workers, which write a checkpoint and stop; a re-run resumes
  them.
* Ray (`--backend ray`, the `ray` extra): one Ray task per run (1 CPU each), in Ray's worker
  processes. `--address` joins a running cluster (`ray start --head` on one machine,
  `ray start --address ...` on the others); without it a local cluster is started for the
  sweep and stopped after it. On a cluster, --out must be a directory every node sees at
  the same path (a shared file system) and mcpo must be installed on every node.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable

from mcpo.experiments.worker import (WORKER_CPU_ENV, run_job, thread_env_vars, worker_cpus,
                                     worker_env)
from mcpo.types import ConfigError
from mcpo.watchdog import EXIT_HUNG
from mcpo.xla_threads import usable_cores

BUSY_RETRIES = 12        # a run directory another process holds: retry this many times,
BUSY_DELAY = 5.0         # this many seconds apart, then report it
HUNG_RETRIES = 2         # a job the hang watchdog stopped (exit 75): run it again this often
STOP_GRACE = 120.0       # after Ctrl-C: how long workers get to write their checkpoint
POLL = 0.25

OnStart = Callable[[dict], None]
OnDone = Callable[[dict, dict], None]
Tick = Callable[[], None]


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Worker:
    """One local worker process and the job it is running (None when idle)."""

    def __init__(self, err_log: Path, cpu: int | None = None):
        """`cpu`: the CPU the worker process is pinned to (None: not pinned)."""
        self.err_log = err_log
        self.err = open(err_log, "ab")
        env = worker_env()
        env.pop(WORKER_CPU_ENV, None)  # not inherited: only the pool pins its workers
        if cpu is not None:
            env[WORKER_CPU_ENV] = str(cpu)
        self.proc = subprocess.Popen([sys.executable, "-m", "mcpo.experiments"],
                                     stdin=subprocess.PIPE, stdout=self.err,
                                     stderr=subprocess.STDOUT, env=env)
        self.job = None
        self.tries = 0

    def give(self, job: dict, tries: int, log: Path) -> None:
        outcome = log.with_suffix(".outcome.json")
        outcome.unlink(missing_ok=True)
        self.job, self.tries, self.outcome, self.log = job, tries, outcome, log
        line = json.dumps({**job, "log": str(log), "outcome": str(outcome)}) + "\n"
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except OSError:
            pass  # it died: poll() reports the run as failed

    def poll(self) -> dict | None:
        """The outcome of its job once it is over (None while it runs)."""
        if self.job is None:
            return None
        if self.outcome.is_file():
            try:
                return json.loads(self.outcome.read_text())
            except (OSError, ValueError):
                pass
        code = self.proc.poll()
        if code is None:
            return None
        if self.outcome.is_file():  # written just before it exited
            try:
                return json.loads(self.outcome.read_text())
            except (OSError, ValueError):
                pass
        why = (f"the worker process was killed by signal {-code}" if code < 0 else
               f"the worker process exited with code {code} without an outcome")
        # What the worker printed outside a run (say, an import error before the run could
        # start) is in the workers' log, not the run's.
        last = _log_tail(self.log, 1).strip()
        where = self.log if last and not last.startswith("=== ") else self.err_log
        return {"name": self.job["name"], "status": "failed", "how": "new",
                "exit_code": code if code > 0 else 128 - code, "steps": 0,
                "error": f"{why}; the end of {where}:\n{_log_tail(where)}",
                "wall_time": None, "host": None, "final_return": None}

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout: float = 30.0) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def _again(job: dict, tries: int, result: dict) -> list[tuple[dict, int, float]]:
    """The (job, tries, when) entries to queue again for a job that ended with `result`, or
    [] when its outcome stands. A run directory another process holds: the same job, a few
    seconds later. One the hang watchdog stopped (mcpo.watchdog; XLA's CPU runtime deadlocks a
    vmapped program now and then): a group's members each alone, since their run directories
    exist now (each resumes from its checkpoint, or starts over if it had none), a single run
    as it was."""
    if result["status"] == "busy" and tries < BUSY_RETRIES:
        return [(job, tries + 1, time.time() + BUSY_DELAY)]
    if result.get("exit_code") == EXIT_HUNG and tries < HUNG_RETRIES:
        return [(m, tries + 1, 0.0) for m in job.get("members") or [job]]
    return []


class LocalPool:
    """`workers` long-lived worker processes (python -m mcpo.experiments, spawned fresh: no
    JAX state is inherited), each running its runs one after another, so JAX and compiled
    programs load once per worker (as Ray's workers do). A worker that dies fails its run
    only and is replaced. `pin`: with one worker per usable CPU, worker i runs on CPU i only
    (`worker.worker_cpus`; its replacement too)."""
    name = "local"

    def __init__(self, workers: int, log_path: Callable[[str], Path], pin: bool = True):
        self.workers = workers
        self.log_path = log_path
        self.cpus = worker_cpus(workers) if pin else None

    def _cpu(self, slot: int) -> int | None:
        return None if self.cpus is None else self.cpus[slot]

    def run(self, jobs: list[dict], on_start: OnStart, on_done: OnDone, tick: Tick) -> None:
        pending = collections.deque((job, 0, 0.0) for job in jobs)  # (job, retries, when)
        err_log = self.log_path("workers")
        slots = [_Worker(err_log, self._cpu(i)) for i in range(min(self.workers, len(jobs)))]
        try:
            while pending or any(w.job for w in slots):
                for i, w in enumerate(slots):
                    if w.job is not None or not pending:
                        continue
                    job, tries, when = pending.popleft()
                    if when > time.time():
                        pending.append((job, tries, when))
                        continue
                    if not w.alive:
                        w.close()
                        slots[i] = w = _Worker(err_log, self._cpu(i))
                    w.give(job, tries, self.log_path(job["name"]))
                    if tries == 0:
                        on_start(job)
                for w in slots:
                    result = w.poll()
                    if result is None:
                        continue
                    job, tries = w.job, w.tries
                    w.job = None
                    again = _again(job, tries, result)
                    if again:
                        pending.extend(again)
                        continue
                    on_done(job, result)
                tick()
                time.sleep(POLL)
        except KeyboardInterrupt:
            self._stop(slots, on_done)
            raise
        finally:
            for w in slots:
                w.close()

    @staticmethod
    def _stop(slots: list[_Worker], on_done: OnDone) -> None:
        busy = [w for w in slots if w.job is not None]
        for w in busy:
            if w.alive:
                w.proc.send_signal(signal.SIGINT)  # the trainer writes a checkpoint, stops
        deadline = time.time() + STOP_GRACE
        for w in busy:
            result = None
            while result is None and time.time() < deadline:
                result = w.poll()
                time.sleep(POLL)
            if result is None:
                w.proc.kill()
                w.proc.wait()
                result = w.poll()
            if result["status"] in ("failed", "busy") and w.proc.returncode in (130, -2):
                result["status"] = "interrupted"
            on_done(w.job, result)
            w.job = None


def _ray_job(job: dict, log: str) -> dict:
    """A Ray task: one run, its output appended to the run's log."""
    with open(log, "a") as f, redirect_stdout(f), redirect_stderr(f):
        print(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(job['command'])}",
              flush=True)
        return run_job(job)


class RayPool:
    name = "ray"

    def __init__(self, workers: int | None, address: str | None,
                 log_path: Callable[[str], Path]):
        self.workers, self.address, self.log_path = workers, address, log_path

    @staticmethod
    def check_available() -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--backend ray needs Ray, which is not installed: pip install "
                              "'mcpo[ray]'.")

    def run(self, jobs: list[dict], on_start: OnStart, on_done: OnDone, tick: Tick) -> None:
        import ray

        kwargs = dict(runtime_env={"env_vars": thread_env_vars()}, include_dashboard=False,
                      log_to_driver=False, logging_level="WARNING")
        if self.address:
            ray.init(address=self.address, **kwargs)
        else:
            ray.init(num_cpus=self.workers or usable_cores(), **kwargs)
        try:
            capacity = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            task = ray.remote(num_cpus=1, max_retries=0)(_ray_job)
            pending = collections.deque((job, 0, 0.0) for job in jobs)
            inflight: dict = {}
            try:
                while pending or inflight:
                    waiting = []
                    while pending and len(inflight) < capacity:
                        job, tries, when = pending.popleft()
                        if when > time.time():
                            waiting.append((job, tries, when))
                            continue
                        ref = task.remote(job, str(self.log_path(job["name"])))
                        inflight[ref] = (job, tries)
                        if tries == 0:
                            on_start(job)
                    pending.extend(waiting)
                    if inflight:
                        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL)
                        for ref in ready:
                            job, tries = inflight.pop(ref)
                            try:
                                result = ray.get(ref)
                            except Exception as e:  # noqa: BLE001 - the worker died
                                result = {"name": job["name"], "status": "failed",
                                          "how": "new", "exit_code": 1, "steps": 0,
                                          "error": f"Ray task failed: {e}", "wall_time": None,
                                          "host": None, "final_return": None}
                            again = _again(job, tries, result)
                            if again:
                                pending.extend(again)
                                continue
                            on_done(job, result)
                    else:
                        time.sleep(POLL)
                    tick()
            except KeyboardInterrupt:
                for ref, (job, _) in inflight.items():
                    ray.cancel(ref)
                for ref, (job, _) in inflight.items():
                    on_done(job, {"name": job["name"], "status": "interrupted", "how": "new",
                                  "exit_code": 130, "steps": 0, "error": "sweep interrupted",
                                  "wall_time": None, "host": None, "final_return": None})
                raise
        finally:
            ray.shutdown()
