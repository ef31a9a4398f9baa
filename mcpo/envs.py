"""Environment construction, vectorization and observation/reward normalization.

Vector envs here use **same-step autoreset** (docs/design.md §3): when a sub-env ends, `step` returns
the first observation of the next episode and hands the episode's last observation back as
`final_obs`. Every step returned is therefore a real transition; the reset never appears as a
transition to train on. Gymnasium's vector envs default to next-step autoreset, so the
`async` backend forces `AutoresetMode.SAME_STEP` and checks the mode it got.

Observations keep their shape and dtype when they are uint8 (Atari frames, MiniGrid grids: they
stay uint8 in the rollout buffers and the networks scale or encode them); any other Box
observation is flattened to a float32 vector, as before. `obs_shape`/`obs_dtype` of a vector env
say which. Per family (docs/design.md §3):

* MiniGrid: the Dict observation becomes one uint8 vector, the 7x7x3 egocentric symbolic image
  (object, colour, state indices per cell) flattened, then the agent's direction
  (`MiniGridObs`); `mcpo.networks` one-hot encodes it.
* Atari (`ALE/<Game>-v5`): Gymnasium's `AtariPreprocessing` (30 no-op starts, frame skip 4 with
  max-pooling of the last two frames, 84x84 grayscale) over `gym.make(id, frameskip=1)` (sticky
  actions 0.25 as v5 defines them), then `FrameStackObservation(4)` (newest frame last). For
  training only, `AtariTrainingSignals` adds episodic life (a lost life ends the *learning*
  episode) and reward clipping to the sign; the score logged is the raw game score of the whole
  game, and evaluation uses the env without these signals.

A vector-env backend is any object with `num_envs`, `single_observation_space`,
`single_action_space`, `obs_shape`, `obs_dtype`, `reset(seeds) -> obs` and
`step(actions) -> VecStep` (same-step autoreset; `score` and `episode_end` carry the logged
episode, `reward` and `terminated` what is learned from), and `close()`: the Collector uses
nothing else, so another backend (envpool) plugs in by providing these.
"""

from __future__ import annotations

import difflib
import importlib
import signal
import threading
from typing import Callable, NamedTuple

import gymnasium as gym
import numpy as np

from mcpo.jaxenv.registry import JAX_BACKENDS, backends_with, check_jax_env_id, install_hint
from mcpo.types import ConfigError

# Environment backends a run can use (TrainConfig.backend): the host-side ones step their envs
# in the Gymnasium trainer (envpool: mcpo.envpool_vec); the pure-JAX ones are in mcpo.jaxenv
# (their whole training loop runs in JAX).
ENVPOOL = "envpool"
BACKENDS = ("gymnasium", ENVPOOL) + JAX_BACKENDS
# Families envpool is used for (the same ids, preprocessing configured to match ours).
ENVPOOL_FAMILIES = ("classic", "box2d", "mujoco", "minigrid", "atari")

# Packages that register extra env ids on import, and the extra that installs them.
_REGISTERING_MODULES = ("minigrid", "ale_py")
_EXTRA_FOR_DEPENDENCY = {"box2d": "box2d", "Box2D": "box2d", "mujoco": "mujoco",
                         "pygame": "video", "imageio": "video", "ale_py": "atari",
                         "ale-py": "atari", "cv2": "atari", "opencv": "atari",
                         "minigrid": "minigrid"}
# Families whose Gymnasium envs need an optional package: (package to import, extra). MiniGrid's
# and Atari's ids are registered by theirs; Box2D's and MuJoCo's by Gymnasium itself.
_FAMILY_PACKAGE = {"box2d": ("Box2D", "box2d"), "mujoco": ("mujoco", "mujoco"),
                   "minigrid": ("minigrid", "minigrid"), "atari": ("ale_py", "atari")}

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


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # ImportError, or a broken install failing at import
        return False


def check_env_id(env_id: str, backend: str = "gymnasium") -> None:
    """Raise ConfigError for an unknown env id, suggesting close matches (or the backend
    that has it)."""
    if backend in JAX_BACKENDS:
        return check_jax_env_id(backend, env_id)
    if backend == ENVPOOL:
        return check_envpool_id(env_id)
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"--env-id must be a Gymnasium environment id; got {env_id!r}.")
    if env_id in gym.registry:
        return
    _import_optional_registries()
    if env_id in gym.registry:
        return
    fam = next((f for prefix, f in _FAMILY_OF_PREFIX if env_id.startswith(prefix)), None)
    if fam in _FAMILY_PACKAGE and not _importable(_FAMILY_PACKAGE[fam][0]):
        pkg, extra = _FAMILY_PACKAGE[fam]
        raise ConfigError(f"Environment {env_id!r} is a {fam} environment, and the package "
                          f"that provides it ({pkg}) is not installed. Fix: pip install "
                          f"'mcpo[{extra}]' (or, from a source checkout, pip install -e "
                          f"\".[{extra}]\").")
    jax_backends = backends_with(env_id)
    if jax_backends:
        b = jax_backends[0]
        raise ConfigError(f"{env_id!r} is not a Gymnasium environment; it is provided by "
                          f"--backend {b} (needs {install_hint(b)}).")
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"Unknown environment id {env_id!r}.{hint} Ids are Gymnasium's "
                      f"registered ids, e.g. 'Pendulum-v1', 'CartPole-v1', 'HalfCheetah-v5'.")


def envpool_id(env_id: str) -> str:
    """envpool's name of a Gymnasium id (its Atari ids have no 'ALE/' prefix)."""
    return env_id[len("ALE/"):] if env_id.startswith("ALE/") else env_id


def check_envpool_id(env_id: str) -> None:
    """ConfigError unless envpool is installed and has `env_id`. The Gymnasium twin must exist
    too: an envpool run is evaluated (and loaded, and filmed) on it (docs/design.md §3)."""
    check_env_id(env_id)
    try:
        import envpool  # optional extra: mcpo[envpool]
    except ImportError:
        raise ConfigError("--backend envpool needs the 'envpool' package, which is not "
                          "installed. Fix: pip install 'mcpo[envpool]' (or, from a source "
                          "checkout, pip install -e \".[envpool]\"); or train with --backend "
                          "gymnasium.") from None
    fam = env_family(env_id)
    twin = _FAMILY_PACKAGE.get(fam)  # the Gymnasium twin's package
    if twin is not None and not _importable(twin[0]):  # caught now, not after training
        raise ConfigError(f"--backend envpool evaluates on the Gymnasium twin of {env_id!r}, "
                          f"which needs the {twin[0]!r} package (not installed). Fix: pip "
                          f"install 'mcpo[envpool,{twin[1]}]'.")
    if fam not in ENVPOOL_FAMILIES or envpool_id(env_id) not in envpool.list_all_envs():
        raise ConfigError(f"--backend envpool has no environment {env_id!r} (envpool "
                          f"{getattr(envpool, '__version__', '?')} lacks it, or mcpo does not "
                          f"use envpool for its family, {fam!r}). Train it with --backend "
                          f"gymnasium (the default), which runs every Gymnasium id.")


def make_env(env_id: str, render_mode: str | None = None, training: bool = False) -> gym.Env:
    """gym.make plus the family's standard wrappers (see the module docstring), with
    missing-dependency errors turned into a clear ConfigError. `training=True` adds what only
    training uses (Atari: episodic life and reward clipping); evaluation leaves it out."""
    check_env_id(env_id)
    fam = env_family(env_id)
    kwargs = {} if render_mode is None else {"render_mode": render_mode}
    try:
        if fam == "atari":
            env = _make_atari(env_id, training, **kwargs)
        else:
            env = gym.make(env_id, **kwargs)
            if fam == "minigrid":
                env = MiniGridObs(env)
    except (gym.error.DependencyNotInstalled, ImportError) as e:
        extra = next((x for k, x in _EXTRA_FOR_DEPENDENCY.items() if k in str(e)), None)
        how = f"pip install 'mcpo[{extra}]'" if extra else "install the package it names"
        raise ConfigError(f"Environment {env_id!r} needs a package that is not installed "
                          f"({e}). Fix: {how}.") from None
    check_spaces(env_id, env.observation_space, env.action_space)
    return env


SUPPORTED_SPACES = ("observations: a Box (a float vector of any shape, flattened; or uint8 "
                    "images/grids, kept as they are), or MiniGrid's Dict (image + direction, "
                    "which mcpo packs into one uint8 vector); actions: Box of shape (n,) "
                    "(continuous) or Discrete(n) starting at 0")


def check_spaces(env_id: str, obs_space, action_space) -> None:
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(f"{env_id}: observation space {obs_space} is not supported. "
                          f"Supported: {SUPPORTED_SPACES} (gymnasium.wrappers."
                          f"FlattenObservation turns other Dict, Tuple and Discrete ones into "
                          f"a Box).")
    if not ((isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1)
            or (isinstance(action_space, gym.spaces.Discrete) and int(action_space.start) == 0)):
        raise ConfigError(f"{env_id}: action space {action_space} is not supported. "
                          f"Supported: {SUPPORTED_SPACES} (a gymnasium.ActionWrapper can map "
                          f"the env's actions to one of these).")


def network_kind(env_id: str, obs_space) -> str:
    """Which network family `mcpo.networks.make_policy` builds for an env: 'minigrid' (one-hot
    grid encoder + MLPs), 'nature-cnn' (uint8 image stacks: Atari) or 'mlp' (vectors)."""
    if env_family(env_id) == "minigrid":
        return "minigrid"
    if obs_space.dtype == np.uint8 and len(obs_space.shape) == 3:
        return "nature-cnn"
    return "mlp"


def env_network_kind(env_id: str) -> str:
    """`network_kind` of `env_id`, read from the observation space of one env made and closed
    here (ConfigError when it cannot be made: a missing optional dependency)."""
    env = make_env(env_id)
    try:
        return network_kind(env_id, env.observation_space)
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------
# Family wrappers
# ---------------------------------------------------------------------------------------------
class MiniGridObs(gym.ObservationWrapper):
    """MiniGrid's Dict observation -> one uint8 vector: the egocentric 7x7x3 symbolic image
    (object, colour, state index per cell) flattened row-major, then the direction (0-3).
    The mission string is dropped (fixed per env id for Unlock/UnlockPickup)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        img = env.observation_space["image"]
        self.image_shape = tuple(img.shape)
        n = int(np.prod(img.shape)) + 1
        self.observation_space = gym.spaces.Box(0, 255, (n,), np.uint8)

    def observation(self, obs):
        return pack_minigrid_obs(obs)


def pack_minigrid_obs(obs: dict) -> np.ndarray:
    """The MiniGridObs packing of a raw MiniGrid observation, or of a batch of them (a
    vector env's dict of arrays); also used by `Agent.act`."""
    direction = np.asarray(obs["direction"], np.uint8)
    img = np.asarray(obs["image"], np.uint8).reshape(direction.shape + (-1,))
    return np.concatenate([img, direction[..., None]], axis=-1)


def _make_atari(env_id: str, training: bool, **kwargs) -> gym.Env:
    import ale_py  # optional extra: mcpo[atari]

    gym.register_envs(ale_py)
    # frameskip=1 so that AtariPreprocessing does the skipping (and its max-pooling); v5's
    # sticky actions (repeat_action_probability 0.25) and 108k-frame limit stay as registered.
    env = gym.make(env_id, frameskip=1, **kwargs)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                          terminal_on_life_loss=False, grayscale_obs=True,
                                          scale_obs=False)
    env = gym.wrappers.FrameStackObservation(env, 4)  # (4, 84, 84), newest frame last
    return AtariTrainingSignals(env) if training else env


class AtariTrainingSignals(gym.Wrapper):
    """Training-only Atari signals (Mnih et al. 2015's episodic life and reward clipping), given
    without changing the game: a lost life sets info['life_lost'] (the vector env then marks
    the transition terminal for GAE, but the game goes on: no reset, so the logged episode is
    the whole game), and the reward becomes its sign, the raw reward in info['score']."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        info = dict(info, life_lost=bool(lives < self._lives and not (term or trunc)),
                    score=float(r))
        self._lives = lives
        return obs, float(np.sign(r)), term, trunc, info


def env_seeds(seed: int, epoch: int, num_envs: int) -> list[int]:
    """Per-env reset seeds as a function of (seed, epoch): a resumed run re-seeds its
    environments from the iteration it resumes at (docs/design.md §8)."""
    ss = np.random.SeedSequence([seed, epoch, 0x5EED])
    return [int(s) for s in ss.generate_state(num_envs, dtype=np.uint32)]


# ---------------------------------------------------------------------------------------------
# Vector envs
# ---------------------------------------------------------------------------------------------
class VecStep(NamedTuple):
    """One step of every sub-env (same-step autoreset)."""

    obs: np.ndarray          # (E, *obs_shape): next obs (the new episode's first after an end)
    reward: np.ndarray       # (E,) float64, the reward to learn from (Atari: clipped)
    terminated: np.ndarray   # (E,) for learning: no bootstrap (Atari: also a lost life)
    truncated: np.ndarray    # (E,) time-limit ends that are not terminations
    final_obs: np.ndarray    # (E, *obs_shape): last obs of episodes that ended, else 0
    score: np.ndarray        # (E,) the raw reward, summed into the logged episode return
    episode_end: np.ndarray  # (E,) the env's episode ended (and was reset): logged episodes


def obs_layout(space) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) observations take in the harness: uint8 stays as it is, anything else is
    a flat float32 vector."""
    if space.dtype == np.uint8:
        return tuple(space.shape), np.dtype(np.uint8)
    return (int(np.prod(space.shape)),), np.dtype(np.float32)


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
        self.obs_shape, self.obs_dtype = obs_layout(self.single_observation_space)
        # What a step without an episode end returns for final_obs / the flags: shared and
        # read-only, so a step allocates only obs and reward (~1 us less per step).
        self._no_final = np.zeros((self.num_envs,) + self.obs_shape, self.obs_dtype)
        self._none = np.zeros(self.num_envs, bool)
        self._no_final.flags.writeable = self._none.flags.writeable = False
        self._range_blanks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # step_range's
        # obs already in the harness's shape (most Box spaces): assigned without a reshape
        self._flat = tuple(self.single_observation_space.shape) == self.obs_shape

    def _obs(self, o):
        return np.asarray(o, self.obs_dtype).reshape(self.obs_shape)

    def reset(self, seeds: list[int]) -> np.ndarray:
        obs = np.empty((self.num_envs,) + self.obs_shape, self.obs_dtype)
        for i, (env, s) in enumerate(zip(self.envs, seeds)):
            o, _ = env.reset(seed=s)
            obs[i] = self._obs(o)
        return obs

    def step(self, actions) -> VecStep:
        return self._step(actions, self.envs, self._no_final, self._none)

    def step_range(self, actions, lo: int, hi: int) -> VecStep:
        """Step sub-envs [lo, hi) alone, one action each (mcpo.rollout.Collector's pipelined
        sampling steps the two halves of the envs in turn)."""
        n = hi - lo
        if n not in self._range_blanks:
            blank = (np.zeros((n,) + self.obs_shape, self.obs_dtype), np.zeros(n, bool))
            for x in blank:
                x.flags.writeable = False
            self._range_blanks[n] = blank
        return self._step(actions, self.envs[lo:hi], *self._range_blanks[n])

    def _step(self, actions, envs, no_final, none) -> VecStep:
        """`no_final`, `none`: the shared read-only arrays of a step without an end."""
        n, shape, dtype = len(envs), self.obs_shape, self.obs_dtype
        obs = np.empty((n,) + shape, dtype)
        rew = np.empty(n, np.float64)
        score = rew
        final_obs, term, trunc, ended = no_final, none, none, none
        for i, env in enumerate(envs):
            o, r, te, tr, info = env.step(actions[i])
            rew[i] = r
            if "score" in info:  # Atari training signals (AtariTrainingSignals)
                if score is rew:
                    score = rew.copy()
                score[i] = info["score"]
                te = te or info["life_lost"]
            if te or tr:
                if term is none:  # the first end in this step: arrays of its own
                    term, trunc, ended = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
                term[i], trunc[i] = te, tr and not te
                if (te and not info.get("life_lost", False)) or tr:
                    if final_obs is no_final:
                        final_obs = np.zeros((n,) + shape, dtype)
                    ended[i] = True
                    final_obs[i] = self._obs(o)
                    o, _ = env.reset()
            obs[i] = o if self._flat else self._obs(o)
        return VecStep(obs, rew, term, trunc, final_obs, score, ended)

    def close(self):
        for env in self.envs:
            env.close()


class QuietAsyncVectorEnv(gym.vector.AsyncVectorEnv):
    """Gymnasium's AsyncVectorEnv whose workers ignore SIGINT from birth: Ctrl-C in a terminal
    signals the whole process group, and the main process (which handles it: a checkpoint, a
    clean exit) closes the workers itself; without this each worker dies with a traceback.

    SIGINT is ignored in this process while the workers are forked (an ignored signal stays
    ignored across exec, and Python then installs no KeyboardInterrupt handler), and our own
    handling is back before waiting for them (`_check_spaces`, the first step after the
    forks): a Ctrl-C is lost only in those milliseconds. (A `worker=` function would do it
    inside the worker, but only after the worker has imported it: mcpo, hence JAX, per worker.)
    """

    def __init__(self, *args, **kwargs):
        main = threading.current_thread() is threading.main_thread()
        self._sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            super().__init__(*args, **kwargs)
        finally:
            self._restore_sigint()

    def _restore_sigint(self) -> None:
        if getattr(self, "_sigint", None) is not None:
            signal.signal(signal.SIGINT, self._sigint)
            self._sigint = None

    def _check_spaces(self):
        self._restore_sigint()
        return super()._check_spaces()


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
        self.obs_shape, self.obs_dtype = obs_layout(self.single_observation_space)

    def _obs(self, o):
        return np.asarray(o, self.obs_dtype).reshape((self.num_envs,) + self.obs_shape)

    def reset(self, seeds: list[int]) -> np.ndarray:
        obs, _ = self.vec.reset(seed=seeds)
        return self._obs(obs)

    def step(self, actions) -> VecStep:
        obs, rew, term, trunc, info = self.vec.step(actions)
        term = np.asarray(term, bool)
        ended = term | np.asarray(trunc, bool)
        rew = np.asarray(rew, np.float64)
        final_obs = np.zeros((self.num_envs,) + self.obs_shape, self.obs_dtype)
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                final_obs[i] = np.asarray(info["final_obs"][i], self.obs_dtype).reshape(
                    self.obs_shape)
        score = rew
        if "score" in info or "final_info" in info:  # Atari training signals
            score = _gym_info(info, "score", rew)
            term = term | _gym_info(info, "life_lost", np.zeros(self.num_envs, bool))
        trunc = np.asarray(trunc, bool) & ~term
        return VecStep(self._obs(obs), rew, term, trunc, final_obs, score, ended)

    def close(self):
        try:
            self.vec.close()
        except (OSError, EOFError):  # a worker already gone (killed): stop the others
            self.vec.close(terminate=True)


def _gym_info(info: dict, key: str, default: np.ndarray) -> np.ndarray:
    """Per-env values of an info key from a Gymnasium vector env's batched info dict; in
    SAME_STEP mode an ending step's own info is under 'final_info'."""
    out = np.array(default, copy=True)
    for src in (info, info.get("final_info") or {}):
        if key in src:
            mask = np.asarray(src["_" + key], bool)
            out[mask] = np.asarray(src[key])[mask]
    return out


def make_vec_env(env_id: str, num_envs: int, backend: str = "sync", training: bool = True):
    """`num_envs` copies of `make_env(env_id, training=training)` as a same-step-autoreset
    vector env."""
    make_env(env_id).close()  # validates id, dependencies and spaces in this process
    fns = [lambda: make_env(env_id, training=training) for _ in range(num_envs)]
    if backend == "sync":
        return SyncVecEnv(fns)
    if backend == "gym-sync":  # reference implementation, used by tests
        return GymVecEnv(gym.vector.SyncVectorEnv(
            fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP))
    if backend == "async":
        # spawn, not fork: forking a process that runs JAX's threads can deadlock
        return GymVecEnv(QuietAsyncVectorEnv(
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
        if n == 1:  # one row (one env, every step): its M2 is 0, nothing to add
            b_mean, b_m2 = x[0], None
        else:
            b_mean = np.add.reduce(x, 0) / n
            d = x - b_mean
            b_m2 = np.add.reduce(d * d, 0)
        delta = b_mean - self.mean
        tot = self.count + n
        self.mean = self.mean + delta * (n / tot)
        m2 = self.var * self.count
        if b_m2 is not None:
            m2 = m2 + b_m2
        self.var = (m2 + delta * delta * (self.count * n / tot)) / tot
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
