"""The state of a directory tree, to assert that a command left it exactly as it was."""

import hashlib
import os
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
