"""`--backend envpool`: envpool's C++ thread pool as the trainer's vector env (docs/design.md §3).

envpool (extra `mcpo[envpool]`, pinned 1.2.5) runs the same env ids as Gymnasium (Atari without
the 'ALE/' prefix), configured here to give what `mcpo.envs.make_env` gives:

* Atari: 30 no-op starts, frame skip 4 with max-pooling, 84x84 grayscale (INTER_AREA resize),
  4 stacked frames newest last, sticky actions 0.25 and the 108k-frame limit of v5, no
  FIRE-on-reset (envpool's default; Gymnasium does not). Episodic life and reward clipping are
  done here, as `AtariTrainingSignals` does them (training only; the score logged is the raw
  game score of the whole game).
* MiniGrid: the Dict observation packed as `MiniGridObs` packs it (image, then direction).
* MuJoCo, Box2D, classic control: as registered; float64 observations become float32.

envpool autoresets on the *next* step (the step after an end ignores its action and returns the
reset observation with reward 0). This adapter never lets such a step happen: the ending step's
observation is kept as `final_obs` (so a truncation bootstraps from the real last state) and the
ended envs are reset at once with `reset(env_ids)`, giving the same-step autoreset the Collector
expects. Seeds: envpool fixes them when the pool is built, so `reset(seeds)` rebuilds it with
`env_seed=seeds` (once per run start or resume). envpool's random streams are not Gymnasium's:
the same seed gives other episodes than the Gymnasium backend.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from mcpo.envs import (ENVPOOL, VecStep, check_envpool_id, check_spaces, env_family, envpool_id,
                       make_vec_env, obs_layout, pack_minigrid_obs)

# Atari settings matching mcpo.envs._make_atari (Gymnasium v5 + AtariPreprocessing).
_ATARI = dict(noop_max=30, frame_skip=4, stack_num=4, img_height=84, img_width=84,
              gray_scale=True, use_inter_area_resize=True, repeat_action_probability=0.25,
              max_episode_steps=108_000 // 4, use_fire_reset=False, episodic_life=False,
              reward_clip=False, zero_discount_on_life_loss=False)


def envpool_seed(seed: int) -> int:
    """envpool takes int32 seeds; `mcpo.envs.env_seeds` draws uint32 ones: fold them into
    [0, 2**31 - 1) (distinct seeds may rarely coincide; the stream is envpool's own anyway)."""
    return int(seed) % (2**31 - 1)


def pool_kwargs(env_id: str) -> dict:
    """The envpool settings that make `env_id` behave as our Gymnasium backend's env."""
    return dict(_ATARI) if env_family(env_id) == "atari" else {}


class EnvPoolVecEnv:
    """The vector-env interface of `mcpo.envs` (same-step autoreset) over an envpool pool."""

    def __init__(self, env_id: str, num_envs: int, training: bool = True, **overrides):
        """`overrides`: further envpool settings (e.g. reset_noise_scale=0.0 for MuJoCo)."""
        check_envpool_id(env_id)
        self.overrides = overrides
        self.env_id = env_id
        self.num_envs = num_envs
        self.family = env_family(env_id)
        self.atari_signals = training and self.family == "atari"
        self.pool = self._make(list(range(num_envs)))
        space = self.pool.single_observation_space
        if self.family == "minigrid":  # MiniGridObs' packing
            n = int(np.prod(space["image"].shape)) + 1
            space = gym.spaces.Box(0, 255, (n,), np.uint8)
        self.single_observation_space = space
        act = self.pool.single_action_space
        if isinstance(act, gym.spaces.Box):  # float32 actions, as Gymnasium's MuJoCo envs
            act = gym.spaces.Box(act.low.astype(np.float32), act.high.astype(np.float32),
                                 act.shape, np.float32)
        self.single_action_space = act
        check_spaces(env_id, space, self.single_action_space)
        self.obs_shape, self.obs_dtype = obs_layout(space)
        self._ids = np.arange(num_envs, dtype=np.int32)
        self._lives = np.zeros(num_envs, np.int64)

    def _make(self, seeds: list[int]):
        import envpool  # optional extra: mcpo[envpool] (checked by check_envpool_id)

        n = self.num_envs
        return envpool.make_gymnasium(envpool_id(self.env_id), num_envs=n, batch_size=n,
                                      env_seed=[envpool_seed(s) for s in seeds],
                                      **{**pool_kwargs(self.env_id), **self.overrides})

    def _layout(self, o) -> np.ndarray:
        """envpool's observations in the harness' layout (MiniGrid packed, dtype, shape)."""
        if self.family == "minigrid":
            o = pack_minigrid_obs(o)
        return np.asarray(o, self.obs_dtype).reshape((-1,) + self.obs_shape)

    def _obs(self, o, info) -> np.ndarray:
        """Observations in env-id order, in the harness' layout."""
        o = self._layout(o)
        ids = np.asarray(info["env_id"])
        if len(ids) == self.num_envs and not np.array_equal(ids, self._ids):
            out = np.empty_like(o)
            out[ids] = o
            return out
        return o

    def reset(self, seeds: list[int]) -> np.ndarray:
        self.pool.close()
        self.pool = self._make(seeds)
        o, info = self.pool.reset()
        if self.atari_signals:
            self._lives[np.asarray(info["env_id"])] = info["lives"]
        return self._obs(o, info)

    def step(self, actions) -> VecStep:
        o, rew, term, trunc, info = self.pool.step(np.asarray(actions))
        ids = np.asarray(info["env_id"])
        if not np.array_equal(ids, self._ids):  # sync pools answer in env-id order
            raise RuntimeError(f"envpool answered for envs {ids}, expected {self._ids}")
        obs = self._obs(o, info)
        rew = np.asarray(rew, np.float64)
        term = np.asarray(term, bool)
        trunc = np.asarray(trunc, bool)
        ended = term | trunc
        score = rew
        if self.atari_signals:  # as AtariTrainingSignals: life loss ends learning episodes
            lives = np.asarray(info["lives"], np.int64)
            term = term | ((lives < self._lives) & ~ended)
            self._lives = lives
            rew = np.sign(rew)
        trunc = trunc & ~term
        final_obs = np.zeros_like(obs)
        if ended.any():
            idx = np.flatnonzero(ended)
            final_obs[idx] = obs[idx]
            o2, info2 = self.pool.reset(idx.astype(np.int32))
            got = np.asarray(info2["env_id"])
            obs[got] = self._layout(o2)
            if self.atari_signals:
                self._lives[got] = info2["lives"]
        return VecStep(obs, rew, term, trunc, final_obs, score, ended)

    def close(self) -> None:
        self.pool.close()


def make_backend_vec_env(env_id: str, num_envs: int, backend: str, vec_env: str = "sync",
                         training: bool = True):
    """The trainer's vector env for a host-side backend: envpool's pool, or Gymnasium envs
    in `vec_env` ('sync' / 'async', `mcpo.envs.make_vec_env`)."""
    if backend == ENVPOOL:
        return EnvPoolVecEnv(env_id, num_envs, training)
    return make_vec_env(env_id, num_envs, vec_env, training)
