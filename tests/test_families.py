"""The MiniGrid and Atari families: observations, wrappers, encoders, success rate, human-
normalized scores, training from the CLI, and the errors for missing extras and unsupported
spaces."""

import json
import subprocess
import sys

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mcpo
from mcpo.agent import run_episodes
from mcpo.checkpoint import load_checkpoint
from mcpo.cli import main
from mcpo.envs import env_seeds, make_env, make_vec_env, network_kind, pack_minigrid_obs
from mcpo.logger import read_metrics
from mcpo.networks import (FORWARD_CHUNK, MiniGridOneHot, NatureCNNActorCritic, make_policy,
                           map_in_chunks)
from mcpo.rollout import Collector, HalfPipeline, prepare_batch
from mcpo.scores import ATARI_RANDOM_HUMAN, atari_game, human_normalized


class Scripted:
    """A stand-in policy for the Collector that plays a fixed action sequence (E = 1)."""

    def __init__(self, actions):
        self.actions, self.t = list(actions), 0

    def sample_noise(self, rng, prefix):
        return np.zeros(prefix + (1,), np.float32)

    def perturbation_np(self, actor, noise):
        return noise

    def sample_perturbed_np(self, actor, obs, perturbation):
        a = self.actions[self.t]
        self.t += 1
        return np.asarray([a])


class ScriptedAgent:
    """A stand-in Agent for `run_episodes`."""

    def __init__(self, actions):
        self.actions, self.t = list(actions), 0

    def seed(self, seed):
        pass

    def act(self, obs, deterministic=True):
        a = self.actions[self.t]
        self.t += 1
        return a


def collect(env_id, actions, seed=3):
    vec = make_vec_env(env_id, 1)
    try:
        col = Collector(vec, Scripted(actions), num_steps=len(actions), gamma=0.99,
                        norm_obs=False, norm_reward=False, clip_obs=10.0, clip_reward=10.0)
        col.start(seed, 0)
        return col.collect(None, np.random.default_rng(0))
    finally:
        vec.close()


# ---------------------------------------------------------------------------------------------
# MiniGrid
# ---------------------------------------------------------------------------------------------
def test_minigrid_observation_and_encoder_shapes():
    env = make_env("MiniGrid-Unlock-v0")
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped.gen_obs()
    env.close()
    assert obs.shape == (7 * 7 * 3 + 1,) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs[:-1], raw["image"].reshape(-1))
    assert obs[-1] == raw["direction"]
    np.testing.assert_array_equal(pack_minigrid_obs(raw), obs)
    enc = MiniGridOneHot()
    x = np.asarray(enc(np.stack([obs, obs]), np))
    assert x.shape == (2, 984) and enc.dim == 984
    # exactly one hot per (cell, object/colour/state) and one for the direction
    assert x.sum(axis=1).tolist() == [49 * 3 + 1] * 2
    cells = x[0, :980].reshape(49, 20)
    np.testing.assert_array_equal(cells[:, :11].argmax(1), raw["image"].reshape(49, 3)[:, 0])
    np.testing.assert_array_equal(cells[:, 11:17].argmax(1), raw["image"].reshape(49, 3)[:, 1])
    np.testing.assert_array_equal(x[0, 980:].argmax(), raw["direction"])
    np.testing.assert_array_equal(np.asarray(jax.jit(enc)(obs[None])), x[:1])  # JAX == NumPy

    space = gym.spaces.Box(0, 255, obs.shape, np.uint8)
    assert network_kind("MiniGrid-Unlock-v0", space) == "minigrid"
    policy = make_policy(space, gym.spaces.Discrete(7), (64, 64), "minigrid")
    params = policy.init(jax.random.PRNGKey(0))
    assert params["actor"]["mlp"][0]["w"].shape == (984, 64)
    batch = np.stack([obs] * 5)
    logits = jax.jit(policy.dist_params)(params["actor"], batch)
    assert logits.shape == (5, 7)
    assert jax.jit(policy.value)(params, batch).shape == (5,)
    host = policy.host_params(params["actor"])
    np.testing.assert_array_equal(policy.mode_np(host, batch), np.argmax(logits, -1))
    # host-side first layer = one-hot @ w + b, without the one-hot
    layer = host["mlp"][0]
    np.testing.assert_allclose(enc.dense_np(batch, layer),
                               np.asarray(enc(batch, np)) @ layer["w"] + layer["b"],
                               rtol=1e-5, atol=1e-6)


# MiniGrid-Empty-5x5: the agent starts at (1, 1) facing right, the goal is at (3, 3).
REACH_GOAL = [2, 2, 1, 2, 2]          # forward, forward, turn right, forward, forward
TIME_OUT = [0] * 100                  # turn left until the 100-step limit (4 * 5 * 5)


def test_minigrid_success_comes_from_real_episode_outcomes():
    ro, episodes = collect("MiniGrid-Empty-5x5-v0", REACH_GOAL + TIME_OUT)
    assert [(e.length, e.success) for e in episodes] == [(5, True), (100, False)]
    assert episodes[0].ret > 0 and episodes[1].ret == 0.0
    assert ro.terminated[4, 0] and ro.truncated[104, 0] and not ro.terminated[104, 0]
    # the evaluation path counts the same way
    eps = run_episodes(ScriptedAgent(REACH_GOAL + TIME_OUT), "MiniGrid-Empty-5x5-v0", 2)
    assert [(e.length, e.success) for e in eps] == [(5, True), (100, False)]


# ---------------------------------------------------------------------------------------------
# Atari
# ---------------------------------------------------------------------------------------------
def play_eval_env(env_id, actions, seed):
    """The same actions on the evaluation env: (score, length, terminations, start lives)."""
    env = make_env(env_id)
    env.reset(seed=seed)
    lives = env.unwrapped.ale.lives()
    score, n, terms = 0.0, 0, 0
    for a in actions:
        _, r, term, trunc, _ = env.step(a)
        score += r
        n += 1
        terms += int(term)
        if term or trunc:
            break
    env.close()
    return score, n, terms, lives


def test_atari_observations_frame_stack_and_pixels():
    vec = make_vec_env("ALE/Breakout-v5", 2)
    try:
        obs = vec.reset(env_seeds(1, 0, 2))
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert vec.single_observation_space.shape == (4, 84, 84)
        rng = np.random.default_rng(0)
        changed = 0
        for _ in range(60):
            step = vec.step(rng.integers(0, 4, 2))
            new = step.obs
            for i in np.flatnonzero(~step.episode_end):
                # newest frame last: the stack shifts toward index 0 and the new frame enters
                # at the end
                np.testing.assert_array_equal(new[i, :3], obs[i, 1:])
                changed += int(np.any(new[i, 3] != obs[i, 3]))
            assert new[:, -1].std() > 10.0  # not blank frames
            obs = new
        assert changed > 30  # pixel statistics change between steps
    finally:
        vec.close()
    env = make_env("ALE/Breakout-v5")
    o, _ = env.reset(seed=0)
    env.close()
    assert o.shape == (4, 84, 84) and o.dtype == np.uint8


def test_atari_training_signals_vs_logged_and_evaluation_episodes():
    """SpaceInvaders (3 lives, rewards 5-30 per invader): for training the reward is clipped
    and each lost life ends the learning episode; the logged episode is the whole game with
    its raw score, exactly what the evaluation env reports for the same actions."""
    env_id, seed = "ALE/SpaceInvaders-v5", 3
    actions = np.random.default_rng(1).integers(0, 6, 4000).tolist()
    ro, episodes = collect(env_id, actions, seed=seed)
    score, length, eval_terms, lives = play_eval_env(env_id, actions,
                                                     env_seeds(seed, 0, 1)[0])
    assert episodes, "no game finished: raise the number of steps"
    game = episodes[0]
    assert game.ret == score and game.length == length   # unclipped score, whole game
    assert score > np.count_nonzero(ro.rewards[:length])  # raw rewards are > 1 ...
    assert set(np.unique(ro.rewards[:length])) <= {0.0, 1.0}  # ... and clipped for training
    assert eval_terms == 1                                  # evaluation: one end, the game's
    assert lives == 3 and int(ro.terminated[:length, 0].sum()) == lives  # training: each life
    assert ro.terminated[length - 1, 0]
    assert not ro.truncated[:length].any()


def test_human_normalized_scores_cover_the_57_games():
    assert len(ATARI_RANDOM_HUMAN) == 57
    import ale_py

    gym.register_envs(ale_py)
    for game in ATARI_RANDOM_HUMAN:
        assert f"ALE/{game}-v5" in gym.registry, game
    assert human_normalized("Breakout", 1.7) == 0.0
    assert human_normalized("Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalized("Pong", -20.7 + 0.5 * 35.3) == pytest.approx(0.5)
    assert atari_game("ALE/MontezumaRevenge-v5") == "MontezumaRevenge"
    assert atari_game("CartPole-v1") is None


def test_nature_cnn_shapes_and_shared_trunk():
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert network_kind("ALE/Pong-v5", space) == "nature-cnn"
    policy = make_policy(space, gym.spaces.Discrete(6), kind="nature-cnn")
    assert isinstance(policy, NatureCNNActorCritic) and policy.feature_map == (7, 7)
    params = policy.init(jax.random.PRNGKey(0))
    assert set(params["actor"]) == {"trunk", "pi"} and set(params["critic"]) == {"v"}
    assert params["actor"]["trunk"]["fc"]["w"].shape == (7 * 7 * 64, 512)
    obs = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 84, 84), dtype=np.uint8)
    logits = jax.jit(policy.dist_params)(params["actor"], obs)
    assert logits.shape == (2, 3, 6)
    # the value reads the actor's trunk: its gradient reaches the trunk
    v, g = jax.jit(jax.value_and_grad(lambda p: policy.value(p, obs).sum()))(params)
    assert jax.eval_shape(policy.value, params, obs).shape == (2, 3)
    assert float(np.abs(g["actor"]["trunk"]["fc"]["w"]).sum()) > 0
    host = policy.host_params(params["actor"])
    np.testing.assert_array_equal(policy.mode_np(host, obs.reshape(6, 4, 84, 84)),
                                  np.argmax(logits, -1).reshape(6))


@pytest.mark.parametrize("shape,kernel,stride", [((2, 84, 84, 4), 8, 4), ((3, 20, 20, 32), 4, 2),
                                                 ((2, 9, 9, 64), 3, 1), ((1, 11, 13, 3), 5, 3)])
def test_im2col_convolution_equals_lax_convolution(shape, kernel, stride):
    """conv2d_valid (the trunk's matmul form) computes XLA's VALID convolution, also for sizes
    the stride does not divide, and so does its gradient."""
    from mcpo.networks import conv2d_valid

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(kernel, kernel, shape[-1], 7)).astype(np.float32)
    ref = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (stride, stride), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(conv2d_valid(x, w, stride), ref(x, w), rtol=1e-4, atol=1e-4)
    g = jax.grad(lambda x, w: (conv2d_valid(x, w, stride) ** 2).sum(), argnums=(0, 1))(x, w)
    g_ref = jax.grad(lambda x, w: (ref(x, w) ** 2).sum(), argnums=(0, 1))(x, w)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(np.abs(b).max()))


@pytest.mark.parametrize("kind", ["nature-cnn", "mlp"])
def test_dist_and_value_is_one_forward_of_both_heads(kind):
    """The losses' joint forward gives what dist_params and value give apart (the CNN's from
    one trunk pass), and its gradient reaches the shared trunk from both heads."""
    if kind == "nature-cnn":
        space, obs_shape = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), (5, 4, 84, 84)
        obs = np.random.default_rng(1).integers(0, 256, obs_shape, dtype=np.uint8)
    else:
        space = gym.spaces.Box(-1, 1, (3,), np.float32)
        obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    policy = make_policy(space, gym.spaces.Discrete(4), kind=kind)
    params = policy.init(jax.random.PRNGKey(2))
    dist, v = jax.jit(policy.dist_and_value)(params, obs)
    np.testing.assert_allclose(dist, jax.jit(policy.dist_params)(params["actor"], obs),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v, jax.jit(policy.value)(params, obs), rtol=1e-6, atol=1e-6)
    if kind == "nature-cnn":
        g_pi = jax.grad(lambda p: policy.dist_and_value(p, obs)[0].sum())(params)
        g_v = jax.grad(lambda p: policy.dist_and_value(p, obs)[1].sum())(params)
        for g in (g_pi, g_v):
            assert float(np.abs(g["actor"]["trunk"]["conv"][0]["w"]).sum()) > 0

@pytest.mark.parametrize("lead,exact", [((2 * FORWARD_CHUNK,), False), ((4, 16), False),
                                        ((3,), True), ((FORWARD_CHUNK + 7,), False),
                                        ((5, 13), False)])
def test_cnn_forward_only_in_chunks_gives_the_same_numbers(lead, exact):
    """A forward-only pass over a batch of frames (theta_old on the rollout, the diagnostics)
    runs in chunks of FORWARD_CHUNK frames, for any leading axes: the same floats as one pass
    over the whole batch for fewer frames than one chunk (one chunk is that pass); otherwise
    equal up to float rounding. (Whole chunks, as Atari's 8 x 128 rollouts fill them, are bit
    for bit equal on an AVX-512 CPU but ~1e-8 apart on AVX2, where XLA tiles a 32-frame and a
    64-frame matmul differently; a partial last chunk takes another kernel everywhere.)"""
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    policy = make_policy(space, gym.spaces.Discrete(4), kind="nature-cnn")
    params = policy.init(jax.random.PRNGKey(3))
    obs = np.random.default_rng(4).integers(0, 256, lead + (4, 84, 84), dtype=np.uint8)
    whole = jax.jit(policy.dist_and_value)(params, obs)
    chunked = jax.jit(lambda p, o: policy.forward_only(
        lambda x: policy.dist_and_value(p, x), o))(params, obs)
    for a, b in zip(chunked, whole):
        assert a.shape == b.shape == lead + b.shape[len(lead):]
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    calls = []
    mapped = map_in_chunks(lambda x: calls.append(x.shape) or x * 2, jnp.arange(70.0), 32)
    np.testing.assert_array_equal(mapped, jnp.arange(70.0) * 2)
    assert calls == [(32,)]  # lax.map traces the chunk once; the last one is padded



# ---------------------------------------------------------------------------------------------
# From the command line
# ---------------------------------------------------------------------------------------------
QUIET = ["--no-progress", "--no-tensorboard", "--snapshots", "0"]


@pytest.mark.slow
def test_minigrid_trains_from_the_cli_and_evaluates(tmp_path, capsys):
    run = tmp_path / "mg"
    assert main(["train", "--algo", "ppo", "--env-id", "MiniGrid-Unlock-v0", "--num-envs", "4",
                 "--num-steps", "256", "--total-timesteps", "2048", "--eval-episodes", "2",
                 "--run-dir", str(run), *QUIET]) == 0
    out = capsys.readouterr().out
    assert "(deterministic, success" in out and "(sampled, success" in out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"] == "minigrid" and cfg["eval_mode"] == "both"
    assert not cfg["norm_obs"]
    rows = read_metrics(run / "metrics.csv")
    assert len(rows) == 2 and "success_rate" in rows[0] and "recent_success" in rows[0]
    assert rows[-1]["episodes_total"] > 0
    res = json.loads((run / "result.json").read_text())
    for k in ("eval_success_rate", "eval_sampled_success_rate", "final_success_rate",
              "eval_sampled_return_mean"):
        assert res[k] is not None and 0.0 <= res[k] <= 1.0, k
    video = tmp_path / "mg.gif"
    assert main(["eval", str(run), "--episodes", "1", "--video", str(video)]) == 0
    assert video.stat().st_size > 1000
    assert "success rate" in capsys.readouterr().out
    agent = mcpo.load(run)
    env = gym.make("MiniGrid-Unlock-v0")  # a raw Dict observation is accepted too
    raw, _ = env.reset(seed=0)
    assert 0 <= int(agent.act(raw)) < 7
    env.close()


@pytest.mark.slow
def test_atari_trains_mcpo_from_the_cli_and_evaluates(tmp_path, capsys):
    run = tmp_path / "pong"
    assert main(["train", "--algo", "mcpo", "--env-id", "ALE/Pong-v5", "--num-envs", "2",
                 "--num-steps", "32", "--update-epochs", "1", "--num-minibatches", "2",
                 "--total-timesteps", "128", "--eval-episodes", "0", "--memory-size", "3",
                 "--run-dir", str(run), *QUIET]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"] == "atari" and not cfg["norm_obs"] and not cfg["norm_reward"]
    rows = read_metrics(run / "metrics.csv")
    assert len(rows) == 2 and "recent_hns" in rows[0] and "memory_fill" in rows[0]
    arrays, _ = load_checkpoint(run / "checkpoints" / "latest.ckpt")
    # MCPO's memory holds the policy = trunk + policy head; the critic is the value head only
    assert any(k.startswith("state.algo.memory.params") and "trunk" in k for k in arrays)
    assert any(k.startswith("state.algo.memory.params") and "'pi'" in k for k in arrays)
    assert not any(k.startswith("state.algo.memory.params") and "'v'" in k for k in arrays)
    agent = mcpo.load(run)
    env = make_env("ALE/Pong-v5")
    obs, _ = env.reset(seed=0)
    assert 0 <= int(agent.act(obs)) < 6
    assert agent.act(np.stack([obs, obs]), deterministic=False).shape == (2,)
    env.close()
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--deterministic"]) == 0
    out = capsys.readouterr().out
    assert "ALE/Pong-v5: return" in out and "human-normalized" in out  # a whole game
    # mcpo report reads the HNS column the trainer writes (128 steps end no Pong game, so the
    # logged values are set here): the best over training, in % (the paper's Table 3 rule)
    import csv
    with open(run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    for r, v in zip(table, ("0.125", "0.0625")):
        r["recent_hns"] = v
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep"), "--reps", "200"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "update_epochs=1) | 1 | 12.50 | 12.50 |" in md, md


@pytest.mark.slow
@pytest.mark.parametrize("env_id,package,extra", [("MiniGrid-Unlock-v0", "minigrid", "minigrid"),
                                                  ("ALE/Pong-v5", "ale_py", "atari")])
def test_missing_extra_names_the_install_command(tmp_path, env_id, package, extra):
    # The package is made unimportable in a fresh interpreter (sys.modules[name] = None makes
    # `import name` raise ImportError), as on a machine without the extra.
    code = (f"import sys; sys.modules[{package!r}] = None\n"
            f"from mcpo.cli import main\n"
            f"sys.exit(main(['train', '--env-id', {env_id!r}, '--run-dir', "
            f"{str(tmp_path / 'r')!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    assert f"pip install 'mcpo[{extra}]'" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,message", [
    (["--env-id", "FrozenLake-v1"], "observation space Discrete(16) is not supported. "
                                    "Supported: observations: a Box"),
    (["--env-id", "MiniGrid-Unlok-v0"], "Did you mean 'MiniGrid-Unlock-v0'"),
    (["--env-id", "ALE/Pong-v5", "--algo", "acktr"], "--algo acktr supports MLP networks only"),
    (["--env-id", "ALE/Pong-v5", "--norm-obs"], "Use --no-norm-obs"),
])
def test_bad_env_input_is_a_clear_error(tmp_path, capsys, args, message):
    assert main(["train", "--run-dir", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_atari_sync_vec_env_matches_gymnasiums_same_step():
    """Our SyncVecEnv and the Gymnasium vector-env adapter (used by --vec-env async) give the
    same transitions, life-loss terminals, raw scores and episode ends."""
    ours, ref = make_vec_env("ALE/Breakout-v5", 2, "sync"), make_vec_env("ALE/Breakout-v5", 2,
                                                                          "gym-sync")
    try:
        seeds = env_seeds(5, 0, 2)
        np.testing.assert_array_equal(ours.reset(seeds), ref.reset(seeds))
        rng = np.random.default_rng(0)
        lives = ends = 0
        for _ in range(500):
            a = rng.integers(0, 4, 2)
            s1, s2 = ours.step(a), ref.step(a)
            for name, x, y in zip(s1._fields, s1, s2):
                np.testing.assert_array_equal(x, y, err_msg=name)
            lives += int((s1.terminated & ~s1.episode_end).sum())
            ends += int(s1.episode_end.sum())
        assert lives > 0 and ends > 0  # the comparison covered both kinds of ends
    finally:
        ours.close()
        ref.close()


def test_atari_pipelined_rollout_gives_the_plain_rollouts_transitions():
    """With the Nature CNN the rollout steps its envs in two halves, each half's forward
    overlapping the other half's emulators (HalfPipeline). Against the plain loop (the
    Gymnasium vector-env adapter cannot step a range of envs, so it takes it): the same
    observations, actions, rewards, ends and logged episodes, over two rollouts (the second
    starts its pipeline from where the first left the envs), with an odd number of envs."""
    E, T = 3, 120
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    policy = make_policy(space, gym.spaces.Discrete(4), kind="nature-cnn")
    params = policy.init(jax.random.PRNGKey(6))
    actor = policy.host_params(params["actor"])
    out = {}
    for backend in ("sync", "gym-sync"):
        vec = make_vec_env("ALE/Breakout-v5", E, backend)
        try:
            assert HalfPipeline.applies(policy, vec, None) == (backend == "sync")
            col = Collector(vec, policy, num_steps=T, gamma=0.99, norm_obs=False,
                            norm_reward=False, clip_obs=10.0, clip_reward=10.0)
            col.start(7, 0)
            rng = np.random.default_rng(8)
            out[backend] = [col.collect(actor, rng, theta_old=params) for _ in range(2)]
        finally:
            vec.close()
    lives = 0
    prepare = jax.jit(lambda p, ro: prepare_batch(policy, p, ro, 0.99, 0.95))
    for (ro, eps), (ref, ref_eps) in zip(out["sync"], out["gym-sync"]):
        for name, x, y in zip(ro._fields, ro, ref):
            if name not in ("dist", "values"):
                np.testing.assert_array_equal(x, y, err_msg=name)
        assert eps == ref_eps
        lives += int(ro.terminated.sum())
        # the pipeline's forward also returned theta_old's terms; the plain loop did not, and
        # its batch computes them in one pass over the frames: the same batch up to rounding
        assert ro.dist.shape == (T, E, 4) and ro.values.shape == (T, E)
        assert ref.dist is None and ref.values is None
        got, want = prepare(params, ro), prepare(params, ref)
        for name, x, y in zip(got._fields, got, want):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.array_equal(ro.values, np.zeros_like(ro.values))
    assert lives > 0  # life losses (terminals for GAE) happened and were compared
