"""The sweep-directory format (`mcpo sweep ... --out DIR`):

    DIR/
      sweep.json        marker and record, rewritten atomically by the sweep holding the lock:
                        format and version, every invocation (command, spec source, scale,
                        backend, host, mcpo version, start/end, counts), and every run any
                        invocation listed (its label, setting, env, seed, flags, command,
                        status, attempts with outcome, host and wall time, last error)
      .lock             held (flock, mcpo.rundir.lock_dir) by the sweep running in DIR, so two
                        sweeps into one directory cannot race (the second exits, code 4)
      logs/<run>.log    each run's worker output, appended per attempt
      <run>/            the runs: ordinary run directories (mcpo.rundir), one per run

A directory is a sweep directory only if it holds a `sweep.json` of this format; a sweep
refuses a non-empty directory without one (or a run directory) and writes nothing there.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from mcpo.checkpoint import atomic_write_bytes
from mcpo.rundir import LOCK, is_run_dir, lock_dir, read_format_file, write_lock_holder
from mcpo.types import ConfigError, StorageError

FORMAT = "mcpo-sweep"
VERSION = 1
MARKER = "sweep.json"
LOGS = "logs"


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def read_sweep(path: Path) -> dict | None:
    """sweep.json's content if `path` is a sweep directory, else None (no lock needed).
    A sweep.json that is not ours raises ConfigError naming it."""
    f = Path(path) / MARKER
    d = read_format_file(f, FORMAT, "sweep record")
    if d is None:
        return None
    if not isinstance(d.get("version"), int) or d["version"] > VERSION:
        raise ConfigError(f"{f}: sweep format version {d.get('version')!r} is not one this "
                          f"mcpo reads (1 to {VERSION}).")
    if not isinstance(d.get("runs"), dict) or not isinstance(d.get("invocations"), list):
        raise ConfigError(f"{f}: 'runs' must be an object and 'invocations' a list.")
    return d


def check_out(path: Path) -> None:
    """Can `path` be (or become) a sweep directory? ConfigError if not; writes nothing."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"--out {path} is a broken symbolic link.")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a directory.")
    if path.is_dir():
        if read_sweep(path) is not None:
            return
        if is_run_dir(path):
            raise ConfigError(f"--out {path} is a run directory (it holds run.json), not a "
                              f"sweep directory; choose another --out.")
        if any(e.name != LOCK for e in path.iterdir()):
            raise ConfigError(f"--out {path} exists, is not empty and is not a sweep "
                              f"directory (no {MARKER}); choose another --out. Nothing was "
                              f"written.")
    anc = path
    while not anc.exists():
        anc = anc.parent
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {path}: {anc} is not writable by this user.")


class SweepDir:
    """An open sweep directory whose lock this process holds; use as a context manager."""

    def __init__(self, path: Path):
        self.path = Path(path)
        check_out(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"Cannot create the sweep directory {path}: {e.strerror}.") \
                from None
        self._fd, _ = lock_dir(self.path, "Sweep directory")
        try:
            write_lock_holder(self._fd)
            check_out(self.path)  # again, under the lock
            self.data = read_sweep(self.path)
            if self.data is None:  # the marker first, so the directory is a sweep's
                self.data = {"format": FORMAT, "version": VERSION, "created": now(),
                             "invocations": [], "runs": {}}
                self.save()
            (self.path / LOGS).mkdir(exist_ok=True)
        except BaseException:
            self.close()
            raise

    def log_path(self, name: str) -> Path:
        return self.path / LOGS / f"{name}.log"

    def save(self) -> None:
        atomic_write_bytes(self.path / MARKER,
                           (json.dumps(self.data, indent=1) + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "SweepDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
