"""JAX's persistent compile cache, made safe to stop at any moment (docs/design.md §8).

JAX 0.10.2 (pinned) writes a cache entry in place (`Path.write_bytes`) and never replaces an
entry that exists. So a process stopped while writing one (Ctrl-C during a compile, a full
disk, a file-size limit, a kill) leaves a truncated file, and every later run warns "Error
reading persistent compilation cache entry", recompiles, and cannot store the good program.
`make_safe()` changes two things, for local cache directories:

* an entry is written to a temporary file and renamed into place, so it is whole or absent;
* an entry that cannot be read is deleted (JAX then warns once, recompiles and stores it).
"""

from __future__ import annotations

from pathlib import Path

import jax
from jax._src import compilation_cache, lru_cache

from mcpo.checkpoint import atomic_write_bytes


def _entry(directory, key: str) -> Path:
    return Path(str(directory)) / f"{key}{lru_cache._CACHE_SUFFIX}"


def _atomic_put(original):
    def put(self, key: str, value: bytes) -> None:
        if self.eviction_enabled or not key:
            return original(self, key, value)  # JAX's own locking and eviction
        path = _entry(self.path, key)
        if not path.exists():
            atomic_write_bytes(path, value)  # JAX warns if it raises, and goes on
    put.mcpo_safe = True
    return put


def _dropping_get(original):
    def get_executable_and_time(cache_key, *args, **kwargs):
        try:
            return original(cache_key, *args, **kwargs)
        except Exception:
            where = jax.config.jax_compilation_cache_dir
            if where and "://" not in str(where):  # a local directory
                _entry(where, cache_key).unlink(missing_ok=True)
            raise  # JAX warns and compiles
    get_executable_and_time.mcpo_safe = True
    return get_executable_and_time


def make_safe() -> None:
    """Install both changes (idempotent)."""
    if not getattr(lru_cache.LRUCache.put, "mcpo_safe", False):
        lru_cache.LRUCache.put = _atomic_put(lru_cache.LRUCache.put)
    if not getattr(compilation_cache.get_executable_and_time, "mcpo_safe", False):
        compilation_cache.get_executable_and_time = _dropping_get(
            compilation_cache.get_executable_and_time)
