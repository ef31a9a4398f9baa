"""The run-directory format: its marker, its lock, the names of what a run writes, and reading
a run's config (for resume, `mcpo.load`, `eval`, reports and sweeps alike).

    <run>/
      run.json          the marker, written first: format name and version, when and how the
                        run was made, and the history of changes to its budget and resumes
      config.json       the config the run was started with (never rewritten)
      metrics.csv       one row per iteration
      result.json       final summary (only once the run has finished)
      tb/               TensorBoard events
      checkpoints/      latest.ckpt and step_<n>.ckpt snapshots
      error.txt         why the last attempt failed (a sweep's worker writes it; removed when
                        the run finishes)
      wandb/            Weights & Biases files (only with --track)
      .lock             held (flock) by the process training in the directory

Safety rules (docs/design.md §8):

* A directory is a run directory only if it holds a valid `run.json`. `--overwrite` refuses
  any other directory, and deletes only what a run writes: a file a user put there is never
  deleted (the command refuses and names it).
* One process at a time: training holds an exclusive OS lock (`fcntl.flock`) on `.lock` for
  its whole run; a second process exits at once naming the holder's pid and changes nothing.
  The kernel drops the lock when its holder dies, so a killed run never blocks its resume.
* Runs written before the marker existed (format 1: config.json + checkpoints, no run.json)
  can be resumed: resuming writes their marker. They cannot be overwritten.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path

from mcpo.checkpoint import atomic_write_bytes
from mcpo.config import TrainConfig
from mcpo.provenance import code_identity, mcpo_version
from mcpo.types import MAX_TIMESTEPS, CheckpointError, ConfigError, RunDirBusy, StorageError

try:  # POSIX; elsewhere runs are not locked (said in the README)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FORMAT = "mcpo-run"
VERSION = 2  # 1: config.json + checkpoints without a marker (mcpo 0.1 before run.json)
MARKER = "run.json"
CONFIG = "config.json"
METRICS = "metrics.csv"
RESULT = "result.json"
TB_DIR = "tb"
CKPT_DIR = "checkpoints"
LATEST = "latest.ckpt"
LOCK = ".lock"
ERROR = "error.txt"      # why the run's last attempt failed (written by a sweep's worker)
WANDB_DIR = "wandb"      # Weights & Biases files of the run (mcpo.tracking, --track)

_TOP_LEVEL = frozenset({MARKER, CONFIG, METRICS, RESULT, TB_DIR, CKPT_DIR, LOCK, ERROR,
                        WANDB_DIR})
_SNAPSHOT = re.compile(r"^step_\d+\.ckpt$")
_TEMP = re.compile(r"^\..+\.tmp-\d+$")  # mcpo.checkpoint.atomic_write_bytes' temp files


def snapshot_name(global_step: int) -> str:
    return f"step_{global_step:012d}.ckpt"


def crossed_snapshot(n: int, total_steps: int, global_step: int, batch_size: int) -> bool:
    """Did the iteration that ended at `global_step` pass one of `n` evenly spaced points of a
    run of `total_steps`? (when to write a step_<n>.ckpt snapshot)"""
    if n == 0:
        return False
    mark = lambda step: (step * n) // total_steps  # noqa: E731 - index of the last point passed
    return mark(global_step) > mark(global_step - batch_size)


def snapshots(path: Path) -> list[Path]:
    """The run's step_<n>.ckpt snapshots, oldest first."""
    d = Path(path) / CKPT_DIR
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _SNAPSHOT.match(p.name))


# ----------------------------------------------------------------------------------------------
# The marker
# ----------------------------------------------------------------------------------------------
def read_format_file(f: Path, fmt: str, what: str) -> dict | None:
    """The JSON object in `f` if it exists (None if not), when its "format" is `fmt`; else
    ConfigError naming the file. For the markers of run and sweep directories."""
    if not f.is_file():
        return None
    try:
        m = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{f} is not a valid {what} ({e}); the directory is left "
                          f"untouched.") from None
    if not isinstance(m, dict) or m.get("format") != fmt:
        raise ConfigError(f"{f} is not an mcpo {what} (no \"format\": \"{fmt}\"); the "
                          f"directory is left untouched.")
    return m


def read_marker(path: Path) -> dict | None:
    """run.json's content if `path` is a run directory of a format we know, else None.
    A run.json that exists but is not ours raises ConfigError naming the file."""
    f = Path(path) / MARKER
    m = read_format_file(f, FORMAT, "run marker")
    if m is None:
        return None
    v = m.get("version")
    if not isinstance(v, int) or not 2 <= v <= VERSION:
        raise ConfigError(f"{f}: run-directory format version {v!r} is not one this mcpo "
                          f"reads (1 to {VERSION}); it was written by a newer mcpo?")
    if not isinstance(m.get("history", []), list):
        raise ConfigError(f"{f}: 'history' must be a list.")
    return m


def is_run_dir(path: Path) -> bool:
    try:
        return read_marker(path) is not None
    except ConfigError:
        return False


def is_legacy_run_dir(path: Path) -> bool:
    """A format-1 run (mcpo 0.1 before run.json): config.json and a checkpoints/ folder."""
    p = Path(path)
    return (not (p / MARKER).exists() and (p / CONFIG).is_file()
            and (p / CKPT_DIR).is_dir())


def foreign_files(path: Path) -> list[str]:
    """Entries of a run directory that no run writes (relative paths, sorted)."""
    p = Path(path)
    out = []
    for e in p.iterdir():
        if e.name in _TOP_LEVEL or _TEMP.match(e.name):
            if e.name == CKPT_DIR and e.is_dir():
                out += [f"{CKPT_DIR}/{c.name}" for c in e.iterdir()
                        if not (c.is_file() and (c.name == LATEST or _SNAPSHOT.match(c.name)
                                                 or _TEMP.match(c.name)))]
            elif e.name in (CKPT_DIR, TB_DIR, WANDB_DIR) and not e.is_dir():
                out.append(e.name)
            continue
        out.append(e.name + ("/" if e.is_dir() else ""))
    return sorted(out)


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


# ----------------------------------------------------------------------------------------------
# Checks before anything is written
# ----------------------------------------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        if p.is_symlink():  # dangling symlink
            raise ConfigError(f"Run directory {path}: {p} is a broken symbolic link.")
        p = p.parent
    return p


def check_new(path: Path, overwrite: bool) -> None:
    """Everything `create` needs, checked without writing: raises ConfigError if the path
    cannot become this run's directory."""
    path = Path(path)
    if path.is_symlink():
        raise ConfigError(f"Run directory {path} is a symbolic link (to {os.readlink(path)}); "
                          f"give the real path, so that --overwrite can never follow a link.")
    anc = _existing_ancestor(path)
    if not anc.is_dir():
        raise ConfigError(f"Run directory {path}: {anc} is a file, not a directory.")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"Run directory {path}: {anc} is not writable by this user.")
    if anc != path:
        return  # will be created
    empty = all(e.name == LOCK for e in path.iterdir())  # a lock file alone: nothing to lose
    if not overwrite:
        if empty:
            return
        if is_run_dir(path) or is_legacy_run_dir(path):
            raise ConfigError(f"Run directory {path} already exists. Continue it with "
                              f"`mcpo train --resume {path}`, replace it with --overwrite, or "
                              f"choose another --run-dir.")
        raise ConfigError(f"Run directory {path} exists and is not empty (and not an mcpo run "
                          f"directory); choose another --run-dir.")
    if empty:
        return
    if read_marker(path) is None:
        legacy = (" It looks like a run of an older mcpo (no run.json): resume it with "
                  f"`mcpo train --resume {path}`, or delete it yourself."
                  if is_legacy_run_dir(path) else "")
        raise ConfigError(f"--overwrite refused: {path} is not an mcpo run directory (no "
                          f"{MARKER}), so nothing in it is deleted.{legacy}")
    foreign = foreign_files(path)
    if foreign:
        shown = ", ".join(foreign[:8]) + (", ..." if len(foreign) > 8 else "")
        raise ConfigError(f"--overwrite refused: {path} holds files that mcpo did not write "
                          f"({shown}); move them away first. Nothing was deleted.")


# ----------------------------------------------------------------------------------------------
# The lock (a run directory's, and a sweep directory's: mcpo.experiments)
# ----------------------------------------------------------------------------------------------
def lock_dir(path: Path, what: str = "Run directory") -> tuple[int, bool]:
    """Take the exclusive OS lock (flock) on `path/.lock` without waiting: (fd, whether the
    lock file was created now). Held until the fd is closed or the process dies. Another
    live holder raises RunDirBusy naming its pid (as written by `write_lock_holder`); `what`
    names the directory's kind in that message."""
    lock = Path(path) / LOCK
    existed = lock.exists()
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StorageError(f"Cannot open the lock file {lock}: {e.strerror}.") from None
    if fcntl is None:
        return fd, not existed
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = ""
        try:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()[0]
        except (OSError, IndexError):
            pass
        os.close(fd)
        if not existed:
            try:
                lock.unlink()
            except OSError:
                pass
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            who = f"process {holder}" if holder else "another process"
            raise RunDirBusy(f"{what} {path} is in use by {who} (it holds {lock}); wait for "
                             f"it to finish or stop it. Nothing was changed.") from None
        raise StorageError(f"Cannot lock {lock}: {e.strerror}.") from None
    return fd, not existed


def write_lock_holder(fd: int) -> None:
    """Record this process (pid, host, time) in a held lock file, for a second process's
    RunDirBusy message."""
    info = f"{os.getpid()} {socket.gethostname()} {_now()}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)


# ----------------------------------------------------------------------------------------------
# The lock and the open run directory
# ----------------------------------------------------------------------------------------------
class RunDir:
    """An open run directory whose lock this process holds; use as a context manager."""

    def __init__(self, path: Path, fd: int, created_lock: bool = False):
        self.path = Path(path)
        self._fd = fd
        self._created_lock = created_lock  # remove the lock file if we give up before commit
        self._committed = False

    # Layout names ------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.path / CKPT_DIR

    @property
    def latest(self) -> Path:
        return self.ckpt_dir / LATEST

    # Opening -----------------------------------------------------------------------------
    @staticmethod
    def _lock(path: Path) -> tuple[int, bool]:
        return lock_dir(path, "Run directory")

    def commit(self) -> None:
        """We will write: record our pid in the lock file (for a second process's error
        message) and drop temp files of interrupted writes (stale, since we hold the lock).
        Until this is called, giving up (`close`) leaves the directory exactly as it was."""
        if self._committed:
            return
        try:
            write_lock_holder(self._fd)
            self._clean_temp_files()
        except OSError as e:
            raise StorageError(f"Cannot write in run directory {self.path}: "
                               f"{e.strerror or e}.") from None
        self._committed = True

    def _clean_temp_files(self) -> None:
        """Temp files of interrupted atomic writes: stale, since we hold the lock."""
        for d in (self.path, self.ckpt_dir):
            if d.is_dir():
                for p in d.iterdir():
                    if _TEMP.match(p.name) and p.is_file():
                        p.unlink()

    @classmethod
    def create(cls, path: Path, cfg: TrainConfig, overwrite: bool = False,
               command: list[str] | None = None) -> "RunDir":
        """Make (or, with overwrite, empty) the directory, lock it, write the marker first and
        then config.json. Call `check_new` first; it is repeated here under the lock."""
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"Cannot create run directory {path}: {e.strerror}.") from None
        rd = cls(path, *cls._lock(path))
        try:
            check_new(path, overwrite)  # again, now that no other mcpo can change it
            rd.commit()
            if overwrite:
                for name in _TOP_LEVEL - {LOCK}:
                    p = path / name
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    elif p.exists() or p.is_symlink():
                        p.unlink()
            try:
                rd.ckpt_dir.mkdir(exist_ok=True)
            except OSError as e:
                raise StorageError(f"Cannot create {rd.ckpt_dir}: {e.strerror or e}.") \
                    from None
            _write_json(path / MARKER, {
                "format": FORMAT, "version": VERSION, "created": _now(),
                "mcpo_version": mcpo_version(), "code": code_identity(),
                "command": command if command is not None else sys.argv,
                "history": []})
            atomic_write_bytes(path / CONFIG, cfg.to_json().encode())
        except BaseException:
            rd.close()
            raise
        return rd

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        """Lock an existing run directory (to resume it). Nothing is written until `commit`
        (then a legacy format-1 run also gets its marker)."""
        path = Path(path)
        if path.is_symlink():
            raise ConfigError(f"Cannot resume {path}: it is a symbolic link; give the real "
                              f"path.")
        if not path.is_dir():
            raise ConfigError(f"Cannot resume {path}: "
                              + ("it is not a directory." if path.exists() else
                                 "no such directory."))
        marker = read_marker(path)
        legacy = marker is None and is_legacy_run_dir(path)
        if marker is None and not legacy:
            raise ConfigError(f"Cannot resume {path}: it is not an mcpo run directory (no "
                              f"{MARKER}).")
        # what a resume rewrites or adds to, checked before anything is written
        for p in (path, path / CKPT_DIR, path / TB_DIR, path / MARKER, path / METRICS):
            if p.exists() and not os.access(p, os.W_OK | (os.X_OK if p.is_dir() else 0)):
                raise ConfigError(f"Cannot resume {path}: {p} is not writable by this user. "
                                  f"Nothing was changed.")
        rd = cls(path, *cls._lock(path))
        rd._legacy = legacy
        return rd

    def commit_resume(self) -> None:
        """`commit`, give a legacy format-1 run its marker, and record a "code" event when
        this process's code differs from the code that last trained the run."""
        self.commit()
        if getattr(self, "_legacy", False) and read_marker(self.path) is None:
            _write_json(self.path / MARKER, {
                "format": FORMAT, "version": VERSION, "created": None,
                "mcpo_version": None, "command": None, "adopted_from_version": 1,
                "history": [{"time": _now(), "event": "adopted", "by": mcpo_version()}]})
        code = code_identity()
        if code["source_sha256"] != (last_code(read_marker(self.path)) or {}).get(
                "source_sha256"):
            self.record("code", code=code)

    def close(self) -> None:
        if self._fd is not None:
            if self._created_lock and not self._committed:
                try:
                    (self.path / LOCK).unlink()
                except OSError:
                    pass
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Config and history ---------------------------------------------------------------------
    def read_config(self) -> TrainConfig:
        return read_config(self.path)

    def record(self, event: str, **fields) -> None:
        """Append an event (e.g. a new budget, 'budget') to run.json's history."""
        m = read_marker(self.path) or {}
        m.setdefault("history", []).append({"time": _now(), "event": event, **fields})
        _write_json(self.path / MARKER, m)


def last_code(marker: dict | None) -> dict | None:
    """The code that last trained a run: its latest "code" event, else the one it was created
    with (mcpo.provenance; None for runs made before run.json recorded it)."""
    marker = marker or {}
    for h in reversed(marker.get("history") or []):
        if isinstance(h, dict) and h.get("event") == "code":
            return h.get("code")
    return marker.get("code")


# ----------------------------------------------------------------------------------------------
# Reading a run (no lock needed)
# ----------------------------------------------------------------------------------------------
def read_config(path: Path) -> TrainConfig:
    """The run's effective config: config.json as written at the start, with the changes
    recorded in run.json's history applied (a new --total-timesteps given on resume). Raises
    ConfigError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path} is not an mcpo run directory: "
                          + ("it is a file." if path.exists() else "no such directory."))
    marker = read_marker(path)
    if marker is None and not is_legacy_run_dir(path):
        raise ConfigError(f"{path} is not an mcpo run directory (no {MARKER}).")
    f = path / CONFIG
    if not f.is_file():
        raise ConfigError(f"{f} is missing: the run directory is incomplete.")
    try:
        d = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{f} is not valid JSON ({e}).") from None
    try:
        cfg = TrainConfig.from_dict(d, strict=True)
    except ConfigError as e:
        raise ConfigError(f"{f}: {e}") from None
    for i, ev in enumerate((marker or {}).get("history", [])):
        if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
            raise ConfigError(f"{path / MARKER}: history entry {i} is {ev!r}, not an event "
                              f"object (it was edited).")
        if ev["event"] == "budget":
            t = ev.get("total_timesteps")
            if (not isinstance(t, int) or isinstance(t, bool)
                    or not 1 <= t <= MAX_TIMESTEPS):
                raise ConfigError(f"{path / MARKER}: a 'budget' event has total_timesteps "
                                  f"{t!r}, not an integer from 1 to {MAX_TIMESTEPS:.0e}.")
            cfg = cfg.replace(total_timesteps=t)
    return cfg.replace(run_dir=str(path))


def find_checkpoint(path: Path, name: str | None = None) -> Path:
    """The checkpoint to resume or load: latest.ckpt, or `name` (a snapshot's file name or a
    path). A missing latest.ckpt with snapshots present names the --resume-from option."""
    path = Path(path)
    if name:
        p = Path(name)
        if not p.is_file():
            p = path / CKPT_DIR / name
        if not p.is_file():
            have = ", ".join(s.name for s in snapshots(path)) or "none"
            raise CheckpointError(f"No checkpoint {name!r} in {path / CKPT_DIR} (snapshots: "
                                  f"{have}).")
        return p
    latest = path / CKPT_DIR / LATEST
    if latest.is_file():
        return latest
    snaps = snapshots(path)
    if snaps:
        raise CheckpointError(
            f"{latest} is missing, but the run has snapshots ({', '.join(s.name for s in snaps)})"
            f". Continue from the newest with `mcpo train --resume {path} --resume-from "
            f"{snaps[-1].name}` (nothing is deleted); `mcpo eval {path} --checkpoint "
            f"{snaps[-1].name}` evaluates it.")
    raise CheckpointError(f"{path} has no checkpoint yet ({latest} is missing and there are "
                          f"no snapshots): the run stopped before its first checkpoint. Its "
                          f"config is in {path / CONFIG}; start a new run with another "
                          f"--run-dir.")
