"""--backend envpool: the same spaces, transitions and episode statistics as the Gymnasium
backend (mcpo/envpool_vec.py), clear errors, and a run trained on it end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import mcpo
from mcpo.cli import main
from mcpo.envpool_vec import EnvPoolVecEnv
from mcpo.envs import BACKENDS, SyncVecEnv, check_env_id, make_vec_env
from mcpo.logger import read_metrics
from mcpo.presets import make_config
from mcpo.rollout import Collector, Episode
from mcpo.types import ConfigError

pytest.importorskip("envpool")

QUIET = ["--no-progress", "--no-tensorboard", "--snapshots", "0"]


def test_envpool_is_a_backend_and_config_choice():
    assert "envpool" in BACKENDS
    cfg = make_config("ppo", "HalfCheetah-v5", backend="envpool").validate()
    assert cfg.backend == "envpool" and cfg.preset == "mujoco"


@pytest.mark.parametrize("env_id,n", [("HalfCheetah-v5", 1), ("ALE/Breakout-v5", 2),
                                      ("MiniGrid-Unlock-v0", 2), ("CartPole-v1", 2),
                                      ("Pendulum-v1", 3)])
def test_same_spaces_and_layout_as_gymnasium(env_id, n):
    a, b = EnvPoolVecEnv(env_id, n), make_vec_env(env_id, n)
    try:
        sa, sb = a.single_observation_space, b.single_observation_space
        assert (sa.shape, sa.dtype) == (sb.shape, sb.dtype)
        assert (a.obs_shape, a.obs_dtype) == (b.obs_shape, b.obs_dtype)
        assert a.single_action_space == b.single_action_space
        obs = a.reset(list(range(n)))
        assert obs.shape == (n,) + b.obs_shape and obs.dtype == b.obs_dtype
        assert sb.contains(obs[0].reshape(sb.shape).astype(sb.dtype))
    finally:
        a.close()
        b.close()


def test_halfcheetah_same_transitions_for_a_fixed_action_sequence():
    # With the reset noise off both start in the same state; envpool bundles its own MuJoCo
    # build, so observations agree to ~1e-12 and rewards to ~1e-7 (its reward arithmetic
    # rounds differently). MuJoCo is chaotic: over the whole 1000 steps the two drift apart
    # (reward differences of ~2 by step 1000), so this compares 200 steps.
    a = EnvPoolVecEnv("HalfCheetah-v5", 1, reset_noise_scale=0.0)
    b = SyncVecEnv([lambda: gym.make("HalfCheetah-v5", reset_noise_scale=0.0)])
    try:
        np.testing.assert_allclose(a.reset([0]), b.reset([0]), atol=1e-12)
        actions = np.random.default_rng(0).uniform(-1, 1, (200, 1, 6)).astype(np.float32)
        for act in actions:
            x, y = a.step(act), b.step(act)
            np.testing.assert_allclose(x.obs, y.obs, atol=1e-6)
            np.testing.assert_allclose(x.reward, y.reward, atol=1e-6)
            assert not x.episode_end.any() and not y.episode_end.any()
    finally:
        a.close()
        b.close()


def test_uint32_run_seeds_are_accepted_and_reproducible():
    # env_seeds draws uint32 seeds; envpool wants int32 ones (the adapter folds them)
    env = EnvPoolVecEnv("CartPole-v1", 2)
    try:
        big = [2**32 - 5, 2553177708]
        a = env.reset(big)
        np.testing.assert_array_equal(a, env.reset(big))
        assert not np.array_equal(a, env.reset([1, 2]))
    finally:
        env.close()


def test_truncation_keeps_the_final_obs_and_never_yields_the_reset_step():
    # envpool autoresets on the next step (reward 0, action ignored); the adapter resets at
    # once instead, so every step returned is a real transition (same-step autoreset).
    env = EnvPoolVecEnv("Pendulum-v1", 2)
    try:
        env.reset([3, 4])
        zero = np.zeros((2, 1), np.float32)
        for _ in range(199):
            st = env.step(zero)
            assert not st.episode_end.any()
        end = env.step(zero)
        assert end.episode_end.all() and end.truncated.all() and not end.terminated.any()
        assert np.abs(end.final_obs).sum() > 0 and not np.allclose(end.final_obs, end.obs)
        nxt = env.step(zero)  # a real step of the new episode: Pendulum's reward is never 0
        assert (nxt.reward < 0).all() and not nxt.episode_end.any()
    finally:
        env.close()


def test_collector_episode_statistics_match_gymnasium_format():
    from mcpo.networks import make_policy
    import jax

    eps = {}
    for name, vec in (("envpool", EnvPoolVecEnv("Pendulum-v1", 2)),
                      ("gymnasium", make_vec_env("Pendulum-v1", 2))):
        policy = make_policy(vec.single_observation_space, vec.single_action_space, (8,), "mlp")
        actor = policy.host_params(jax.jit(policy.init)(jax.random.PRNGKey(0))["actor"])
        col = Collector(vec, policy, num_steps=400, gamma=0.99, norm_obs=True,
                        norm_reward=True, clip_obs=10.0, clip_reward=10.0)
        col.start(1, 0)
        ro, eps[name] = col.collect(actor, np.random.default_rng(0))
        vec.close()
        assert ro.truncated.sum() == 4 and not ro.terminated.any()
        assert np.abs(ro.final_obs[199]).sum() > 0 and np.abs(ro.final_obs[198]).sum() == 0
    for name, got in eps.items():
        assert len(got) == 4 and all(isinstance(e, Episode) for e in got), name
        assert [e.length for e in got] == [200] * 4 and not any(e.success for e in got)
        assert all(-2000 < e.ret < 0 for e in got)


def test_atari_training_signals_as_the_gymnasium_backend():
    # Life loss ends the learning episode (terminated) but not the logged game; the reward
    # learned from is the sign of the raw score, which is what the episode return sums.
    env = EnvPoolVecEnv("ALE/Breakout-v5", 2)
    try:
        env.reset([0, 1])
        rng = np.random.default_rng(0)
        life_losses = game_ends = 0
        for _ in range(800):
            st = env.step(rng.integers(0, 4, 2).astype(np.int32))
            np.testing.assert_array_equal(st.reward, np.sign(st.score))
            life_losses += int((st.terminated & ~st.episode_end).sum())
            game_ends += int(st.episode_end.sum())
        assert life_losses > 0 and game_ends > 0
        assert life_losses >= 4 * game_ends  # Breakout: 5 lives per game
    finally:
        env.close()
    ev = EnvPoolVecEnv("ALE/Breakout-v5", 1, training=False)
    try:
        ev.reset([0])
        for _ in range(300):
            st = ev.step(np.array([3], np.int32))
            assert not (st.terminated & ~st.episode_end).any()  # evaluation: whole games
    finally:
        ev.close()


def test_an_id_envpool_lacks_names_the_gymnasium_backend():
    check_env_id("MiniGrid-MultiRoom-N4-S5-v1")  # Gymnasium has it
    with pytest.raises(ConfigError, match="--backend gymnasium"):
        check_env_id("MiniGrid-MultiRoom-N4-S5-v1", "envpool")
    assert main(["train", "--backend", "envpool", "--env-id", "MiniGrid-MultiRoom-N4-S5-v1",
                 "--run-dir", "/nonexistent/never-written"]) == 2


def test_a_missing_gymnasium_twin_is_caught_before_training(monkeypatch):
    # BipedalWalker runs on envpool without Box2D, but its evaluation needs Gymnasium's twin
    monkeypatch.setitem(sys.modules, "Box2D", None)
    with pytest.raises(ConfigError, match=r"pip install 'mcpo\[envpool,box2d\]'"):
        check_env_id("BipedalWalker-v3", "envpool")


@pytest.mark.slow
def test_missing_envpool_extra_names_the_install_command(tmp_path):
    code = ("import sys; sys.modules['envpool'] = None\n"
            "from mcpo.cli import main\n"
            f"sys.exit(main(['train', '--backend', 'envpool', '--env-id', 'HalfCheetah-v5', "
            f"'--run-dir', {str(tmp_path / 'r')!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    assert "pip install 'mcpo[envpool]'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_trains_on_envpool_from_the_cli_and_evaluates_on_the_gymnasium_twin(tmp_path, capsys):
    run = tmp_path / "hc"
    assert main(["train", "--algo", "ppo", "--backend", "envpool", "--env-id",
                 "HalfCheetah-v5", "--num-steps", "256", "--num-minibatches", "4",
                 "--update-epochs", "2", "--total-timesteps", "512", "--eval-episodes", "1",
                 "--run-dir", str(run), *QUIET]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backend"] == "envpool"
    rows = read_metrics(run / "metrics.csv")
    assert len(rows) == 2 and rows[-1]["global_step"] == 512
    res = json.loads((run / "result.json").read_text())
    assert np.isfinite(res["eval_return_mean"])
    agent = mcpo.load(run)
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert "HalfCheetah-v5: return" in capsys.readouterr().out
    assert agent.act(np.zeros(17, np.float32)).shape == (6,)
