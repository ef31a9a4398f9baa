"""Environment construction, vectorization and observation/reward normalization.

Vector envs here use **same-step autoreset** (docs/design.md §3): when a sub-env ends, `step` returns
the first observation of the next episode and hands the episode's last observation back as
`final_obs`. Every step returned is therefore a real transition; the reset never appears as a
transition to train on. Gymnasium's vector envs default to next-step autoreset, so the
`async` backend forces `AutoresetMode.SAME_STEP` and checks the mode it got.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

import gymnasium as gym
import numpy as np

from mcpo.jaxenv.registry import JAX_BACKENDS, backends_with, check_jax_env_id, install_hint
from mcpo.types import ConfigError

# Environment backends a run can use (TrainConfig.backend); the pure-JAX ones are in
# mcpo.jaxenv (their whole training loop runs in JAX).
BACKENDS = ("gymnasium",) + JAX_BACKENDS

# Packages that register extra env ids on import, and the extra that installs them.
_REGISTERING_MODULES = ("minigrid", "ale_py")
_EXTRA_FOR_DEPENDENCY = {"box2d": "box2d", "Box2D": "box2d", "mujoco": "mujoco",
                         "pygame": "video", "imageio": "video"}

# Env families (the unit of the training presets, mcpo.presets): by the registered entry
# point's package, or by the id's prefix when the package that registers it is missing.
FAMILIES = ("classic", "box2d", "mujoco", "minigrid", "atari", "other")
_FAMILY_OF_ENTRY_POINT = (("gymnasium.envs.classic_control", "classic"),
                          ("gymnasium.envs.toy_text", "classic"),
                          ("gymnasium.envs.box2d", "box2d"),
                          ("gymnasium.envs.mujoco", "mujoco"),
                          ("minigrid", "minigrid"), ("ale_py", "atari"))
_FAMILY_OF_PREFIX = (("MiniGrid-", "minigrid"), ("BabyAI-", "minigrid"), ("ALE/", "atari"))


def env_family(env_id: str) -> str:
    """'classic', 'box2d', 'mujoco', 'minigrid', 'atari' or 'other' for an env id."""
    for prefix, fam in _FAMILY_OF_PREFIX:
        if env_id.startswith(prefix):
            return fam
    spec = gym.registry.get(env_id)
    if spec is None:
        _import_optional_registries()
        spec = gym.registry.get(env_id)
    entry = spec.entry_point if spec is not None and isinstance(spec.entry_point, str) else ""
    for package, fam in _FAMILY_OF_ENTRY_POINT:
        if entry.startswith(package):
            return fam
    return "other"


def _import_optional_registries() -> None:
    for mod in _REGISTERING_MODULES:
        try:
            m = importlib.import_module(mod)
            if mod == "ale_py":
                gym.register_envs(m)
        except Exception:  # not installed: its ids are simply unknown
            pass


def check_env_id(env_id: str, backend: str = "gymnasium") -> None:
    """Raise ConfigError for an unknown env id, suggesting close matches (or the backend
    that has it)."""
    if backend in JAX_BACKENDS:
        return check_jax_env_id(backend, env_id)
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"--env-id must be a Gymnasium environment id; got {env_id!r}.")
    if env_id in gym.registry:
        return
    _import_optional_registries()
    if env_id in gym.registry:
        return
    jax_backends = backends_with(env_id)
    if jax_backends:
        b = jax_backends[0]
        raise ConfigError(f"{env_id!r} is not a Gymnasium environment; it is provided by "
                          f"--backend {b} (needs {install_hint(b)}).")
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"Unknown environment id {env_id!r}.{hint} Ids are Gymnasium's "
                      f"registered ids, e.g. 'Pendulum-v1', 'CartPole-v1', 'HalfCheetah-v5'.")


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """gym.make with missing-dependency errors turned into a clear ConfigError."""
    check_env_id(env_id)
    try:
        env = (gym.make(env_id) if render_mode is None
               else gym.make(env_id, render_mode=render_mode))
    except gym.error.DependencyNotInstalled as e:
        extra = next((x for k, x in _EXTRA_FOR_DEPENDENCY.items() if k in str(e)), None)
        how = f"pip install 'mcpo[{extra}]'" if extra else "install the package it names"
        raise ConfigError(f"Environment {env_id!r} needs a package that is not installed "
                          f"({e}). Fix: {how}.") from None
    check_spaces(env_id, env.observation_space, env.action_space)
    return env


def check_spaces(env_id: str, obs_space, action_space) -> None:
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(f"{env_id}: observation space {obs_space} is not supported; the MLP "
                          f"networks need a Box (vector) observation.")
    if not isinstance(action_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise ConfigError(f"{env_id}: action space {action_space} is not supported "
                          f"(Box and Discrete are).")


def env_seeds(seed: int, epoch: int, num_envs: int) -> list[int]:
    """Per-env reset seeds as a function of (seed, epoch): a resumed run re-seeds its
    environments from the iteration it resumes at (docs/design.md §8)."""
    ss = np.random.SeedSequence([seed, epoch, 0x5EED])
    return [int(s) for s in ss.generate_state(num_envs, dtype=np.uint32)]


class SyncVecEnv:
    """Minimal in-process vector env with same-step autoreset.

    Gymnasium's SyncVectorEnv spends ~25 us per step on info bookkeeping, more than a Pendulum
    step itself; this loop keeps only what the harness uses. `tests/test_envs.py` checks it
    produces exactly the transitions of Gymnasium's SyncVectorEnv in SAME_STEP mode.
    """

    autoreset_mode = gym.vector.AutoresetMode.SAME_STEP

    def __init__(self, env_fns: list[Callable[[], gym.Env]]):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.obs_dim = int(np.prod(self.single_observation_space.shape))

    def reset(self, seeds: list[int]) -> np.ndarray:
        obs = np.empty((self.num_envs, self.obs_dim), np.float32)
        for i, (env, s) in enumerate(zip(self.envs, seeds)):
            o, _ = env.reset(seed=s)
            obs[i] = np.asarray(o, np.float32).reshape(-1)
        return obs

    def step(self, actions):
        n = self.num_envs
        obs = np.empty((n, self.obs_dim), np.float32)
        final_obs = np.zeros((n, self.obs_dim), np.float32)
        rew = np.empty(n, np.float64)
        term = np.zeros(n, bool)
        trunc = np.zeros(n, bool)
        for i, env in enumerate(self.envs):
            o, r, te, tr, _ = env.step(actions[i])
            rew[i] = r
            if te or tr:
                term[i], trunc[i] = te, tr and not te
                final_obs[i] = np.asarray(o, np.float32).reshape(-1)
                o, _ = env.reset()
            obs[i] = np.asarray(o, np.float32).reshape(-1)
        return obs, rew, term, trunc, final_obs

    def close(self):
        for env in self.envs:
            env.close()


class GymVecEnv:
    """Adapter over a Gymnasium vector env forced to SAME_STEP autoreset."""

    def __init__(self, vec: gym.vector.VectorEnv):
        mode = vec.metadata.get("autoreset_mode")
        if mode != gym.vector.AutoresetMode.SAME_STEP:
            raise RuntimeError(f"vector env autoreset mode is {mode}, expected SAME_STEP")
        self.vec = vec
        self.num_envs = vec.num_envs
        self.single_observation_space = vec.single_observation_space
        self.single_action_space = vec.single_action_space
        self.obs_dim = int(np.prod(self.single_observation_space.shape))

    def reset(self, seeds: list[int]) -> np.ndarray:
        obs, _ = self.vec.reset(seed=seeds)
        return np.asarray(obs, np.float32).reshape(self.num_envs, -1)

    def step(self, actions):
        obs, rew, term, trunc, info = self.vec.step(actions)
        term = np.asarray(term, bool)
        trunc = np.asarray(trunc, bool) & ~term
        final_obs = np.zeros((self.num_envs, self.obs_dim), np.float32)
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                final_obs[i] = np.asarray(info["final_obs"][i], np.float32).reshape(-1)
        return (np.asarray(obs, np.float32).reshape(self.num_envs, -1),
                np.asarray(rew, np.float64), term, trunc, final_obs)

    def close(self):
        self.vec.close()


def make_vec_env(env_id: str, num_envs: int, backend: str = "sync"):
    make_env(env_id).close()  # validates id, dependencies and spaces in this process
    fns = [lambda: gym.make(env_id) for _ in range(num_envs)]
    if backend == "sync":
        return SyncVecEnv(fns)
    if backend == "gym-sync":  # reference implementation, used by tests
        return GymVecEnv(gym.vector.SyncVectorEnv(
            fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP))
    if backend == "async":
        # spawn, not fork: forking a process that runs JAX's threads can deadlock
        return GymVecEnv(gym.vector.AsyncVectorEnv(
            fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, context="spawn"))
    raise ValueError(f"unknown vector env backend {backend!r}")


class RunningMeanStd:
    """Running mean and variance over a stream of batches (parallel-variance update)."""

    def __init__(self, shape=(), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = float(epsilon)

    def update(self, x: np.ndarray) -> None:
        """Merge a batch (leading axis) into the statistics (Chan et al.'s parallel update).

        Written with plain ufuncs: x.mean/x.var cost ~20 us on tiny arrays, and this runs
        every environment step."""
        n = x.shape[0]
        if n == 1:
            b_mean, b_m2 = x[0], 0.0
        else:
            b_mean = np.add.reduce(x, 0) / n
            d = x - b_mean
            b_m2 = np.add.reduce(d * d, 0)
        delta = b_mean - self.mean
        tot = self.count + n
        self.mean = self.mean + delta * (n / tot)
        self.var = (self.var * self.count + b_m2 + delta * delta * (self.count * n / tot)) / tot
        self.count = tot

    def update_one(self, x: float) -> None:
        """`update` of scalar statistics with one value, on Python floats (the same float64
        operations in the same order, so the same result, ~5x faster)."""
        n, count = 1, self.count
        delta = x - float(self.mean)
        tot = count + n
        self.mean = np.float64(float(self.mean) + delta * (n / tot))
        self.var = np.float64((float(self.var) * count + 0.0 + delta * delta * (count * n / tot))
                              / tot)
        self.count = tot

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(),
                "count": np.asarray(self.count, np.float64)}

    def load_state_dict(self, d: dict) -> None:
        self.mean = np.asarray(d["mean"], np.float64).copy()
        self.var = np.asarray(d["var"], np.float64).copy()
        self.count = float(d["count"])


def normalize_obs(obs: np.ndarray, rms: RunningMeanStd | None, clip: float) -> np.ndarray:
    if rms is None:
        return obs
    y = ((obs - rms.mean) / np.sqrt(rms.var + 1e-8)).astype(np.float32)
    np.minimum(y, clip, out=y)
    np.maximum(y, -clip, out=y)
    return y
