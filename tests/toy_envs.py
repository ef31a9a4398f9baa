"""Tiny deterministic environments for harness tests."""

import os
import pathlib
import time

import gymnasium as gym
import numpy as np


class CounterEnv(gym.Env):
    """obs = [t, episode id]; reward 1 every real step (a fake reset transition would show
    reward 0); terminates when t reaches `terminate_at` (if set), truncated by TimeLimit."""

    def __init__(self, terminate_at: int | None = None, nan_reward_at: int | None = None,
                 reward: float = 1.0, render_mode=None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.terminate_at = terminate_at
        self.nan_reward_at = nan_reward_at
        self.reward = reward
        self.t = 0
        self.episode = -1
        self.total_steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return np.array([0.0, self.episode], np.float32), {}

    def step(self, action):
        self.t += 1
        self.total_steps += 1
        reward = self.reward
        if self.nan_reward_at is not None and self.total_steps >= self.nan_reward_at:
            reward = float("nan")
        term = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([self.t, self.episode], np.float32), reward, term, False, {}


def register():
    if "mcpo_test/Counter-v0" not in gym.registry:
        gym.register("mcpo_test/Counter-v0", entry_point=CounterEnv, max_episode_steps=5)
        gym.register("mcpo_test/CounterTerm-v0", entry_point=CounterEnv,
                     kwargs={"terminate_at": 3}, max_episode_steps=100)
        gym.register("mcpo_test/NanReward-v0", entry_point=CounterEnv,
                     kwargs={"nan_reward_at": 300}, max_episode_steps=50)
        # finite rewards whose squared value errors overflow float32: the learner goes NaN
        gym.register("mcpo_test/HugeReward-v0", entry_point=CounterEnv,
                     kwargs={"reward": 1e30}, max_episode_steps=50)


class SpaceEnv(gym.Env):
    """An env with the given observation and action spaces (for the space checks); steps
    return a sample of the observation space."""

    def __init__(self, observation_space, action_space, render_mode=None):
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class SlowStartEnv(CounterEnv):
    """CounterEnv whose construction (`where="init"`) or first reset in the process
    (`where="reset"`) takes `delay` seconds, after touching the file named by
    $MCPO_TEST_STARTED: a signal test knows the run is at that point of its start-up."""

    _reset_done = False

    def __init__(self, delay: float = 1.0, where: str = "init", render_mode=None):
        super().__init__()
        self.delay, self.where = delay, where
        if where == "init":
            self._pause()

    def _pause(self):
        if os.environ.get("MCPO_TEST_STARTED"):
            pathlib.Path(os.environ["MCPO_TEST_STARTED"]).touch()
            time.sleep(self.delay)

    def reset(self, *, seed=None, options=None):
        if self.where == "reset" and not SlowStartEnv._reset_done:
            SlowStartEnv._reset_done = True
            self._pause()
        return super().reset(seed=seed, options=options)


_VEC = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
SPACES = {  # id -> (observation space, action space), each unsupported in one of the two
    "mcpo_test/ActBox2x2-v0": (_VEC, gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32)),
    "mcpo_test/ActMultiDiscrete-v0": (_VEC, gym.spaces.MultiDiscrete([3, 2])),
    "mcpo_test/ActDict-v0": (_VEC, gym.spaces.Dict({"a": gym.spaces.Discrete(2)})),
    "mcpo_test/ActMultiBinary-v0": (_VEC, gym.spaces.MultiBinary(4)),
    "mcpo_test/ActTuple-v0": (_VEC, gym.spaces.Tuple((gym.spaces.Discrete(2),
                                                      gym.spaces.Discrete(3)))),
    "mcpo_test/ActDiscreteStart1-v0": (_VEC, gym.spaces.Discrete(3, start=1)),
    "mcpo_test/ObsDict-v0": (gym.spaces.Dict({"x": _VEC}), gym.spaces.Discrete(2)),
    "mcpo_test/ObsDiscrete-v0": (gym.spaces.Discrete(5), gym.spaces.Discrete(2)),
}


def register_spaces():
    for env_id, (obs, act) in SPACES.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=SpaceEnv, max_episode_steps=10,
                         kwargs={"observation_space": obs, "action_space": act})
    if "mcpo_test/SlowStart-v0" not in gym.registry:
        gym.register("mcpo_test/SlowStart-v0", entry_point=SlowStartEnv, max_episode_steps=5)
        gym.register("mcpo_test/SlowReset-v0", entry_point=SlowStartEnv, max_episode_steps=5,
                     kwargs={"where": "reset"})
