"""The live view of a sweep: counts, env steps, throughput and ETA, and one line per running
run (its steps and recent return, read from the end of its metrics.csv). On a terminal it is
redrawn in place every second; otherwise (a log file, CI) it prints one line per finished run
and a summary line every minute."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mcpo.logger import last_metrics_row
from mcpo.rundir import METRICS

REDRAW = 1.0     # s, on a terminal
SUMMARY = 60.0   # s, otherwise


def duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    def __init__(self, name: str, total_runs: int, total_steps: int, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.name = name
        self.total_runs, self.total_steps = total_runs, total_steps
        self.counts = {"done": 0, "resumed": 0, "skipped": 0, "failed": 0, "interrupted": 0}
        self.running: dict[str, dict] = {}     # name -> job
        self.steps_done = 0                    # budget of runs that are over
        self.steps_trained = 0                 # env steps trained by this sweep's workers
        self.t0 = time.time()
        self._drawn = 0
        self._last = 0.0

    # events --------------------------------------------------------------------------------
    def skipped(self, job: dict, steps: int) -> None:
        self.counts["skipped"] += 1
        self.steps_done += steps

    def started(self, job: dict) -> None:
        self.running[job["name"]] = job
        self.refresh(force=True)

    def finished(self, job: dict, outcome: dict, budget: int) -> None:
        self.running.pop(job["name"], None)
        st = outcome["status"]
        key = {"done": "done", "skipped": "skipped", "interrupted": "interrupted"}.get(st,
                                                                                   "failed")
        self.counts[key] += 1
        if st == "done" and outcome.get("how") == "resumed":
            self.counts["resumed"] += 1
        self.steps_done += budget
        self.steps_trained += outcome.get("steps") or 0
        if st not in ("done", "skipped"):
            err = (outcome.get("error") or "").strip().splitlines()
            self._print(f"{st}: {job['name']} (exit code {outcome.get('exit_code')}): "
                        f"{err[0] if err else ''}")
        elif not self.tty:
            self._print(f"{st}: {job['name']} ({outcome.get('how')}, "
                        f"{duration(outcome.get('wall_time') or 0)})")
        self.refresh(force=True)

    # drawing -------------------------------------------------------------------------------
    def _live(self) -> tuple[int, list[str]]:
        steps, lines = 0, []
        for name, job in self.running.items():
            row = last_metrics_row(Path(job["run_dir"]) / METRICS)
            budget = job["config"]["total_timesteps"]
            at = int(row["global_step"]) if row else 0
            steps += at
            ret = row.get("recent_return") if row else None
            ret_s = f"  return {ret:9.2f}" if ret is not None and ret == ret else ""
            lines.append(f"  {name[:70]:<70} {at / budget:5.0%} {at:>12,}/{budget:,}{ret_s}")
        return steps, lines

    def status(self) -> str:
        c = self.counts
        over = sum(c[k] for k in ("done", "skipped", "failed", "interrupted"))
        live, _ = self._live()
        elapsed = time.time() - self.t0
        rate = (self.steps_trained + live) / elapsed if elapsed > 0 else 0.0
        left = max(self.total_steps - self.steps_done - live, 0)
        eta = f", ETA {duration(left / rate)}" if rate > 0 and left else ""
        return (f"sweep {self.name}: {over}/{self.total_runs} runs over ({c['done']} done, "
                f"{c['skipped']} skipped, {c['failed']} failed), {len(self.running)} running;"
                f" {rate:,.0f} env steps/s{eta}")

    def refresh(self, force: bool = False) -> None:
        now = time.time()
        if self.tty:
            if not force and now - self._last < REDRAW:
                return
            _, lines = self._live()
            text = [self.status(), *lines]
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.write("\n".join(text) + "\n")
            self.stream.flush()
            self._drawn = len(text)
        elif now - self._last >= SUMMARY:
            self._print(self.status())
        else:
            return
        self._last = now

    def _print(self, line: str) -> None:
        if self.tty and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.flush()
            self._drawn = 0
