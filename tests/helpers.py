"""Test helpers: the state of a directory tree (to assert that a command left it exactly as
it was), and waiting on a process under test."""

import hashlib
import os
import time
from pathlib import Path


def tree(root) -> dict:
    """{relative path: (size, sha256)} of every file under root (directories as None)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[str((Path(dirpath) / d).relative_to(root)) + "/"] = None
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = (p.stat().st_size,
                                              hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def wait_for(pred, proc, timeout=180):
    """Poll `pred()` until true; fail if `proc` ends first or time runs out (then kill it)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        if pred():
            return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("timed out")
