"""Which pure-JAX env libraries (backends) exist, which ids each provides, and clear errors.

The tables are data, so an id is checked (and a wrong backend named) without importing the
library. A new library adds its backend name, its extra and its ids here and a `JaxEnv`
adapter (mcpo/jaxenv/base.py says what it must provide) to `make_jax_env`.
"""

from __future__ import annotations

import difflib
import importlib.util

from mcpo.jaxenv.base import JaxEnv
from mcpo.jaxenv.gymnax_env import GymnaxEnv
from mcpo.jaxenv.xminigrid_env import XMiniGridEnv
from mcpo.types import ConfigError

JAX_BACKENDS = ("gymnax", "xminigrid")

# pip extra that installs each backend, and the module that must import.
EXTRA = {"gymnax": "gymnax", "xminigrid": "xminigrid"}
MODULE = {"gymnax": "gymnax", "xminigrid": "xminigrid"}

# env id -> the Gymnasium id of the same environment ("twin"), or None. Same ids as Gymnasium
# where Gymnasium has the environment (same dynamics, observation layout, rewards and time
# limits; tests/test_jaxenv.py checks Pendulum step by step); MinAtar ids are gymnax's own, and
# so are xminigrid's (its MiniGrid tasks see (tile, colour) cells and have 6 actions, so a
# policy does not carry over to Gymnasium's MiniGrid: mcpo/jaxenv/xminigrid_env.py).
IDS: dict[str, dict[str, str | None]] = {
    "gymnax": {
        "Pendulum-v1": "Pendulum-v1",
        "CartPole-v1": "CartPole-v1",
        "Acrobot-v1": "Acrobot-v1",
        "MountainCar-v0": "MountainCar-v0",
        "MountainCarContinuous-v0": "MountainCarContinuous-v0",
        "Asterix-MinAtar": None,
        "Breakout-MinAtar": None,
        "Freeway-MinAtar": None,
        "SpaceInvaders-MinAtar": None,
    },
    # xminigrid 0.9.3's registered MiniGrid-* ids (its XLand-* meta-RL ids need a ruleset
    # benchmark and are not listed).
    "xminigrid": {k: None for k in (
        "MiniGrid-Unlock", "MiniGrid-UnlockPickUp", "MiniGrid-BlockedUnlockPickUp",
        "MiniGrid-DoorKey-5x5", "MiniGrid-DoorKey-6x6", "MiniGrid-DoorKey-8x8",
        "MiniGrid-DoorKey-16x16", "MiniGrid-Empty-5x5", "MiniGrid-Empty-6x6",
        "MiniGrid-Empty-8x8", "MiniGrid-Empty-16x16", "MiniGrid-EmptyRandom-5x5",
        "MiniGrid-EmptyRandom-6x6", "MiniGrid-EmptyRandom-8x8", "MiniGrid-EmptyRandom-16x16",
        "MiniGrid-FourRooms", "MiniGrid-LockedRoom", "MiniGrid-MemoryS8", "MiniGrid-MemoryS16",
        "MiniGrid-MemoryS32", "MiniGrid-MemoryS64", "MiniGrid-MemoryS128",
        "MiniGrid-Playground")},
}


def is_jax_backend(backend: str) -> bool:
    return backend in JAX_BACKENDS


def backends_with(env_id: str) -> list[str]:
    """The JAX backends that provide `env_id`."""
    return [b for b in JAX_BACKENDS if env_id in IDS[b]]


def twin(backend: str, env_id: str) -> str | None:
    """The Gymnasium id of the same environment, if Gymnasium has it."""
    return IDS[backend].get(env_id)


def install_hint(backend: str) -> str:
    return f"pip install 'mcpo[{EXTRA[backend]}]'"


def check_installed(backend: str) -> None:
    if importlib.util.find_spec(MODULE[backend]) is None:
        raise ConfigError(f"--backend {backend} needs the {MODULE[backend]!r} package, which "
                          f"is not installed. Fix: {install_hint(backend)}.")


def check_jax_env_id(backend: str, env_id: str) -> None:
    """ConfigError for an id the backend lacks (naming the backend that has it) or a backend
    whose library is not installed (naming the pip command)."""
    ids = IDS[backend]
    if not isinstance(env_id, str) or env_id not in ids:
        others = [b for b in backends_with(str(env_id)) if b != backend]
        if others:
            where = f" It is provided by --backend {others[0]}."
        else:
            close = difflib.get_close_matches(str(env_id), list(ids), n=2, cutoff=0.6)
            where = (f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else
                     " If it is a Gymnasium id, train it with --backend gymnasium (the "
                     "default).")
        raise ConfigError(f"--backend {backend} has no environment {env_id!r}.{where} "
                          f"{backend} ids: {', '.join(ids)}.")
    check_installed(backend)


def make_jax_env(backend: str, env_id: str) -> JaxEnv:
    """The `JaxEnv` adapter of `env_id` in `backend` (checked first)."""
    check_jax_env_id(backend, env_id)
    if backend == "gymnax":
        return GymnaxEnv(env_id)
    if backend == "xminigrid":
        return XMiniGridEnv(env_id)
    raise ConfigError(f"unknown JAX backend {backend!r}; known: {', '.join(JAX_BACKENDS)}.")
