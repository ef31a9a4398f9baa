"""mcpo.load(run).act(obs) on a plain Gymnasium env, with frozen normalization."""

import gymnasium as gym
import numpy as np
import pytest

import mcpo
from mcpo.envs import normalize_obs

TINY = dict(num_envs=2, num_steps=64, num_minibatches=2, update_epochs=2, progress=False,
            tensorboard=False, eval_episodes=0)


@pytest.fixture(scope="module", params=["Pendulum-v1", "CartPole-v1"])
def run(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("agent") / request.param
    mcpo.train(mcpo.TrainConfig(algo="ppo", env_id=request.param, run_dir=str(d),
                                total_timesteps=256, **TINY))
    return request.param, d


def test_act_on_plain_env(run):
    env_id, d = run
    agent = mcpo.load(d)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        a = agent.act(obs, deterministic=True)
        assert env.action_space.contains(a), a
        obs, *_ = env.step(a)
    batch = np.stack([obs, obs, obs])
    acts = agent.act(batch)
    assert len(acts) == 3
    np.testing.assert_allclose(acts[0], agent.act(obs), rtol=1e-5)  # batched BLAS rounding


def test_act_uses_saved_normalization_and_the_policy_mode(run):
    env_id, d = run
    agent = mcpo.load(d)
    assert agent.obs_rms is not None and agent.obs_rms.count > 100
    obs = gym.make(env_id).observation_space.sample()
    x = normalize_obs(obs[None].astype(np.float32), agent.obs_rms, agent.clip_obs)
    mode = agent.policy.mode_np(agent.actor, x)[0]
    a = agent.act(obs, deterministic=True)
    if env_id == "CartPole-v1":
        assert a == mode
    else:
        np.testing.assert_allclose(a, np.clip(mode, -2.0, 2.0), rtol=1e-6)
    # stochastic actions vary
    agent.seed(0)
    samples = [agent.act(obs, deterministic=False) for _ in range(20)]
    assert len({np.asarray(s).tobytes() for s in samples}) > 1


def test_load_specific_checkpoint_and_missing_one(run):
    _, d = run
    mcpo.load(d, "latest.ckpt")
    with pytest.raises(mcpo.ConfigError, match="No checkpoint"):
        mcpo.load(d, "nope.ckpt")


def test_final_evaluations_of_different_seeds_do_not_share_start_states():
    """The final evaluation resets episode i with episode_seed(run seed, tag) + i: runs with
    neighbouring seeds must not replay each other's start states (they did with seed + const)."""
    from mcpo.rollout import episode_seed
    from mcpo.trainer import FINAL_EVAL

    episodes = 100
    starts = [episode_seed(s, FINAL_EVAL) for s in range(20)]
    blocks = [set(range(a, a + episodes)) for a in starts]
    for i in range(20):
        for j in range(i):
            assert not blocks[i] & blocks[j], (i, j)
    assert episode_seed(3, FINAL_EVAL) == episode_seed(3, FINAL_EVAL)  # reproducible
    assert all(0 <= min(b) and max(b) < 2**32 for b in blocks)
