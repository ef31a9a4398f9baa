"""Tiny deterministic environments for harness tests."""

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
