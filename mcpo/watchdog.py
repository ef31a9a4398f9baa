"""A watchdog for computations that can deadlock: XLA's CPU runtime, with vmapped seeds on
jax 0.10.2, sometimes never finished an iteration — every thread waits on a futex, the process
uses no CPU, and without a watchdog it waits forever (docs/design.md §3.1; measured with
`--backend gymnax --seeds` for MCPO: 1 start in 10 hung). The cause found, jaxlib's batched
LAPACK kernels waiting on XLA's own thread pool, is avoided since 2026-12-06
(mcpo.networks.one_matrix_at_a_time); the watchdog stays for any other.

A deadlocked process and a slow one differ in CPU use, not in wall time: a compile or a long
iteration keeps the CPU busy, a deadlock does not. The watchdog samples the process's CPU time
(all threads) every `interval` seconds and exits with `EXIT_HUNG` once the process has used
less than `min_share` of one core for `seconds` on end. A pause it did not see running (the
process stopped by Ctrl-Z or SIGSTOP, a suspended machine) starts the count over, so a
resumed process is not mistaken for a hung one.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time

from mcpo.types import ConfigError

EXIT_HUNG = 75            # EX_TEMPFAIL: try again (a rerun, or a resume, usually succeeds)
ENV_SECONDS = "MCPO_HANG_SECONDS"
DEFAULT_SECONDS = 180.0
ENV_RETRIES = "MCPO_HANG_RETRIES"
DEFAULT_RETRIES = 2
# $MCPO_HANG_LOG: a file a hang is also recorded in (appended): when, the process, the message
# and every thread's Python stack. For where stderr is not seen: pytest captures it at the
# file-descriptor level and loses it when the process exits from under it (os._exit), so the
# test suite (tests/conftest.py) and CI (.ci/run) set it and show it after an exit 75.
ENV_LOG = "MCPO_HANG_LOG"
# The `mcpo` command line of this process (without "mcpo"), when the process is one CLI
# training that may be started again after a hang (set by `mcpo train`; the Python API and
# sweep workers leave it None: their callers decide).
RETRY_ARGV: list[str] | None = None


def hang_retries() -> int:
    """Automatic restarts left after a hang, from $MCPO_HANG_RETRIES (default 2)."""
    raw = os.environ.get(ENV_RETRIES, "").strip()
    if not raw:
        return DEFAULT_RETRIES
    try:
        return max(0, int(raw))
    except ValueError:
        raise ConfigError(f"${ENV_RETRIES} must be a whole number of restarts (0: none); "
                          f"got {raw!r}.") from None


def restart(argv: list[str]) -> None:
    """Replace this process by `mcpo <argv>` (exec: same PID, so a parent waiting on it gets
    the new run's exit code) with one restart fewer left; returns only if the exec failed."""
    left = hang_retries()
    sys.stderr.write(f"mcpo: starting again in this process ({left - 1} more automatic "
                     f"restart(s) left; ${ENV_RETRIES}=0 stops with exit code {EXIT_HUNG} "
                     f"instead): mcpo {' '.join(argv)}\n")
    sys.stderr.flush()
    os.environ[ENV_RETRIES] = str(left - 1)
    os.execv(sys.executable, [sys.executable, "-m", "mcpo", *argv])


def hang_seconds() -> float:
    """The limit from $MCPO_HANG_SECONDS (0 or negative: no watchdog), else the default."""
    raw = os.environ.get(ENV_SECONDS, "").strip()
    if not raw:
        return DEFAULT_SECONDS
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"${ENV_SECONDS} must be a number of seconds (0: no watchdog); "
                          f"got {raw!r}.") from None


class HangWatchdog:
    """`with HangWatchdog(seconds, message): ...` — if the process stays idle for `seconds`
    inside the block, `message` goes to stderr, then `on_hang()` runs if given (it may replace
    the process: `restart`), and the process exits with EXIT_HUNG (os._exit: the stuck threads
    cannot be joined). `seconds` <= 0 disables it."""

    def __init__(self, seconds: float, message: str, *, interval: float = 5.0,
                 min_share: float = 0.05, on_hang=None):
        self.seconds, self.message, self.on_hang = seconds, message, on_hang
        self.interval, self.min_share = interval, min_share
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "HangWatchdog":
        if self.seconds > 0:
            self._thread = threading.Thread(target=self._watch, name="mcpo-hang-watchdog",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        wall, cpu, idle = time.monotonic(), time.process_time(), 0.0
        while not self._stop.wait(self.interval):
            now, used = time.monotonic(), time.process_time()
            dt, dcpu = now - wall, used - cpu
            wall, cpu = now, used
            if dt > 3 * self.interval:  # we were not running: stopped or suspended
                idle = 0.0
            elif dcpu < self.min_share * dt:
                idle += dt
            else:
                idle = 0.0
            if idle >= self.seconds and not self._stop.is_set():
                self._fire()
                return

    def _fire(self) -> None:
        try:
            sys.stderr.write(self.message.rstrip("\n") + "\n")
            sys.stderr.flush()
            record_hang(self.message)
            if self.on_hang is not None:  # e.g. exec a resume of the run (never returns)
                self.on_hang()
        finally:
            os._exit(EXIT_HUNG)


def record_hang(message: str) -> None:
    """Append the hang to $MCPO_HANG_LOG, if set: a header (time, PID, command line), the
    message, and the Python stack of every thread (faulthandler: it reads the frames without
    the GIL holder's help, so it works while they are stuck). Never raises."""
    path = os.environ.get(ENV_LOG, "").strip()
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} hang in PID {os.getpid()}: "
                    f"{' '.join(sys.argv)}\n{message.rstrip()}\n"
                    f"Python stacks of every thread (most recent call first):\n")
            f.flush()
            faulthandler.dump_traceback(f, all_threads=True)
            f.write("\n")
    except (OSError, ValueError):  # an unwritable log must not keep the process from exiting
        pass
