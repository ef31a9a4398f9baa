"""Which code made a run: mcpo's version, a hash of the package's source, and the git commit
of the checkout it was imported from (if any).

The version string alone does not identify the code (it stays 0.1.0 across every commit), and
a git commit is missing where the package was installed from a wheel or a `git archive`
snapshot. The source hash always exists: SHA-256 over the relative path and bytes of every
`.py` file of the imported `mcpo` package, in sorted order. Two runs with the same hash ran
the same Python code; run.json records it when a run is created and again whenever a resume
runs different code (`mcpo.rundir`), and a report lists the code versions of its runs.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def mcpo_version() -> str:
    try:
        return version("mcpo")
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=None)
def source_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 (hex) of the package's Python source: each file's relative path and bytes."""
    h = hashlib.sha256()
    for f in sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts):
        h.update(f.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def git_commit(package_dir: Path = PACKAGE_DIR) -> str | None:
    """HEAD of the git checkout the package was imported from, with " (with uncommitted
    changes)" if tracked files under the package differ from it; None when the package is not
    the `mcpo/` folder of a git checkout (a wheel in a venv that happens to sit inside some
    repository is not that repository's code) or git is unavailable."""
    try:
        top = subprocess.run(["git", "-C", str(package_dir), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() / package_dir.name \
                != package_dir:
            return None
        head = subprocess.run(["git", "-C", str(package_dir), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(package_dir), "status", "--porcelain",
                                "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + (" (with uncommitted changes)"
                                      if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def code_identity() -> dict:
    """What run.json records as "code"."""
    return {"mcpo_version": mcpo_version(), "source_sha256": source_hash(),
            "git_commit": git_commit()}


def short(code: dict | None) -> str:
    """One line naming a recorded code identity (for reports and messages)."""
    if not code:
        return "not recorded (a run made before mcpo recorded its code)"
    git = code.get("git_commit")
    return (f"source {str(code.get('source_sha256'))[:12]}"
            + (f", git {git[:12]}{git[40:]}" if git else ", not a git checkout")
            + f", mcpo {code.get('mcpo_version')}")
