"""Safe, atomic checkpoints (docs/design.md §2, §8).

File layout: ``MAGIC | sha256(payload) | payload`` where payload is msgpack of
``{"meta": {...JSON-like...}, "arrays": {path: {"dtype", "shape", "data"}}}``.
No pickle anywhere: loading never executes code. A truncated or altered file fails the checksum
and is reported as corrupt. Writes go to a temp file in the same directory, are fsynced, then
renamed over the target, so a kill at any moment leaves either the old or the new checkpoint.

Arrays are restored into a *template* pytree built from the run's config, and every leaf's path,
shape and dtype must match, so a checkpoint from another config is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import jax
import msgpack
import numpy as np

from mcpo.types import CheckpointError, StorageError

MAGIC = b"MCPO-CKPT-v1\n"
CHECKPOINT_FORMAT = 1  # version of the metadata a run's checkpoint carries (mcpo.trainer)


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {prefix + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _encode(arr: np.ndarray) -> dict:
    arr = np.asarray(arr, order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}


def _decode(d: dict) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync, rename over `path`: a kill or a full
    disk at any moment leaves either the old file or the new one, never a partial one.
    OS failures raise StorageError (the old file is intact, the temp file removed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        kept = "the previous version is intact" if path.exists() else "nothing was written"
        raise StorageError(f"Could not write {path}: {e.strerror or e} ({kept}).") from None


def save_checkpoint(path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    payload = msgpack.packb({"meta": meta, "arrays": {k: _encode(v) for k, v in arrays.items()}},
                            use_bin_type=True)
    atomic_write_bytes(Path(path), MAGIC + hashlib.sha256(payload).digest() + payload)


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    raw = path.read_bytes()
    head = len(MAGIC) + 32
    if len(raw) < head or not raw.startswith(MAGIC):
        raise CheckpointError(f"{path} is not an mcpo checkpoint (bad header); it may be "
                              f"truncated or another kind of file.")
    digest, payload = raw[len(MAGIC):head], raw[head:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"Checkpoint {path} is corrupt (checksum mismatch): it was "
                              f"truncated or modified. Use an earlier snapshot in "
                              f"{path.parent} or start a new run.")
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        arrays = {k: _decode(v) for k, v in obj["arrays"].items()}
        meta = obj["meta"]
    except Exception as e:  # noqa: BLE001 - any decode failure means corrupt
        raise CheckpointError(f"Checkpoint {path} cannot be decoded ({e}).") from None
    return arrays, meta


def restore(template, arrays: dict[str, np.ndarray], prefix: str = "", source: str = ""):
    """Fill `template`'s leaves from `arrays`, checking path, shape and dtype of each.
    The template's leaves may be arrays or `jax.ShapeDtypeStruct`s (from `jax.eval_shape`)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for path, leaf in leaves:
        key = prefix + jax.tree_util.keystr(path)
        if key not in arrays:
            raise CheckpointError(f"Checkpoint {source} lacks {key!r}: it was written by a "
                                  f"different algorithm or configuration.")
        arr = arrays[key]
        shape = tuple(np.shape(leaf))
        dtype = np.dtype(leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)
        if arr.shape != shape or arr.dtype != dtype:
            raise CheckpointError(f"Checkpoint {source}: {key!r} has shape {arr.shape} "
                                  f"{arr.dtype}, the run's config needs {shape} {dtype}.")
        out.append(arr)
    return jax.tree_util.tree_unflatten(treedef, out)


# The metadata of a run's checkpoint (written by mcpo.trainer.Trainer.save): key -> what it must be.
_COUNTERS = ("iteration", "global_step", "episodes", "lost_episodes", "csv_rows")


def check_checkpoint_meta(meta, path, algo: str) -> None:
    """CheckpointError naming the file and the key when a run checkpoint's metadata is not what
    resuming or loading needs (missing, wrong type, negative, another algorithm)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"Checkpoint {path} has no metadata object.")
    for key in ("format", "algo", *_COUNTERS, "recent_returns", "wall_time"):
        if key not in meta:
            raise CheckpointError(f"Checkpoint {path} lacks the metadata key {key!r}; it was "
                                  f"not written by this mcpo (or was edited).")

    def bad(key, want):
        return CheckpointError(f"Checkpoint {path}: metadata {key!r} is {meta[key]!r}, not "
                               f"{want}; it was not written by this mcpo (or was edited).")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not is_int(meta["format"]):
        raise bad("format", "an integer")
    if meta["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"Checkpoint {path} has format {meta['format']}; this mcpo reads "
                              f"format {CHECKPOINT_FORMAT}.")
    if not isinstance(meta["algo"], str):
        raise bad("algo", "an algorithm name")
    for key in _COUNTERS:
        if not is_int(meta[key]) or meta[key] < 0:
            raise bad(key, "a non-negative integer")
    if not isinstance(meta["recent_returns"], list) or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool)
            for r in meta["recent_returns"]):
        raise bad("recent_returns", "a list of numbers")
    if not is_number(meta["wall_time"]) or meta["wall_time"] < 0:
        raise bad("wall_time", "a non-negative number of seconds")
    if meta["csv_rows"] > meta["iteration"]:
        raise CheckpointError(f"Checkpoint {path}: metadata 'csv_rows' ({meta['csv_rows']}) "
                              f"exceeds 'iteration' ({meta['iteration']}); it was edited.")
    if meta["algo"] != algo:
        raise CheckpointError(f"Checkpoint {path} is for algo {meta['algo']!r}, the run's "
                              f"config says {algo!r}.")
