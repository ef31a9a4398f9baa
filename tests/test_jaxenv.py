"""The pure-JAX backend (--backend gymnax): env semantics against Gymnasium, the loop's
normalization and episode statistics against the Gymnasium path's, vmapped seeds, exact group
resume, loading/evaluating gymnax runs, clear errors, and learning."""

import collections
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mcpo
from conftest import CARTPOLE_QUICK, cartpole_solved, lapack_operands, vmapped_lapack_calls
import mcpo.api
from mcpo.algos import ALGOS
from mcpo.checkpoint import load_checkpoint
from mcpo.cli import main
from mcpo.config import TrainConfig
from mcpo.envs import RunningMeanStd, check_env_id
from mcpo.jaxenv import registry
from mcpo.jaxenv.loop import EpisodeLog, Loop, recent_in_order
from mcpo.jaxenv.runner import GroupRunner
from mcpo.jaxenv.registry import make_jax_env
from mcpo.jaxenv.running import scale_reward, stats_init, stats_update
from mcpo.logger import read_metrics
from mcpo.networks import make_policy
from mcpo.rollout import Collector
from mcpo.types import ConfigError, NonFiniteError

pytest.importorskip("gymnax")

TINY = dict(env_id="Pendulum-v1", backend="gymnax", num_envs=2, num_steps=64,
            num_minibatches=2, update_epochs=2, progress=False, tensorboard=False,
            eval_episodes=0)
TIME_COLUMNS = {"wall_time", "sps"}


def _rows(run_dir):
    return [{k: v for k, v in r.items() if k not in TIME_COLUMNS}
            for r in read_metrics(run_dir / "metrics.csv")]


# --------------------------------------------------------------------------------------------
# The environments
# --------------------------------------------------------------------------------------------
def test_pendulum_matches_gymnasium_for_a_fixed_action_sequence():
    """Same start state, same actions: same observations, rewards and time-limit end."""
    ref = gym.make("Pendulum-v1")
    obs_ref, _ = ref.reset(seed=0)
    env = make_jax_env("gymnax", "Pendulum-v1")
    obs, state = env.reset(jax.random.PRNGKey(0))
    th, thdot = ref.unwrapped.state
    state = state.replace(theta=jnp.float32(th), theta_dot=jnp.float32(thdot))
    step = jax.jit(env.step)
    actions = np.random.default_rng(0).uniform(-2.0, 2.0, (200, 1)).astype(np.float32)
    for t, a in enumerate(actions):
        o_ref, r_ref, term_ref, trunc_ref, _ = ref.step(a)
        out = step(jax.random.PRNGKey(t), state, jnp.asarray(a))
        np.testing.assert_allclose(out.final_obs, o_ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out.reward, r_ref, rtol=1e-4, atol=1e-4)
        assert (bool(out.terminated), bool(out.truncated)) == (term_ref, trunc_ref), t
        state = out.state
    assert trunc_ref and not term_ref  # step 200 is the time limit
    # same-step autoreset: the step that ended the episode returns the next one's first obs
    assert int(state.time) == 0 and not np.allclose(out.obs, out.final_obs)


def test_cartpole_terminates_like_gymnasium_and_is_not_truncated():
    ref = gym.make("CartPole-v1")
    ref.reset(seed=1)
    env = make_jax_env("gymnax", "CartPole-v1")
    _, state = env.reset(jax.random.PRNGKey(0))
    x, x_dot, th, th_dot = ref.unwrapped.state
    state = state.replace(x=jnp.float32(x), x_dot=jnp.float32(x_dot), theta=jnp.float32(th),
                          theta_dot=jnp.float32(th_dot))
    step = jax.jit(env.step)
    for t in range(500):  # always push right: the pole falls within ~10 steps
        o_ref, r_ref, term_ref, trunc_ref, _ = ref.step(1)
        out = step(jax.random.PRNGKey(t), state, jnp.int32(1))
        np.testing.assert_allclose(out.final_obs, o_ref, rtol=1e-4, atol=1e-5)
        assert float(out.reward) == r_ref == 1.0
        assert (bool(out.terminated), bool(out.truncated)) == (term_ref, trunc_ref)
        state = out.state
        if term_ref:
            break
    assert term_ref and t < 50


def test_env_ids_and_spaces():
    for env_id, twin in registry.IDS["gymnax"].items():
        env = make_jax_env("gymnax", env_id)
        if twin is not None:
            g = gym.make(twin)
            assert env.observation_space.shape == g.observation_space.shape, env_id
            assert type(env.action_space) is type(g.action_space), env_id
            assert env.max_episode_steps == g.spec.max_episode_steps, env_id
        else:  # MinAtar: a 10 x 10 x C grid, flattened
            assert env.observation_space.shape[0] % 100 == 0 and env.action_space.n >= 3


def test_clear_errors_for_ids_backends_and_missing_extras(monkeypatch):
    with pytest.raises(ConfigError, match="--backend gymnax has no environment "
                                          "'HalfCheetah-v5'.*--backend gymnasium"):
        TrainConfig(env_id="HalfCheetah-v5", backend="gymnax").validate()
    with pytest.raises(ConfigError, match="provided by --backend gymnax"):
        check_env_id("Breakout-MinAtar")
    with pytest.raises(ConfigError, match="Did you mean 'CartPole-v1'"):
        check_env_id("CartPol-v1", "gymnax")
    monkeypatch.setitem(registry.MODULE, "gymnax", "no_such_module_xyz")
    with pytest.raises(ConfigError, match=r"pip install 'mcpo\[gymnax\]'"):
        TrainConfig(backend="gymnax").validate()


# --------------------------------------------------------------------------------------------
# The loop's pieces against the Gymnasium path's
# --------------------------------------------------------------------------------------------
def test_running_statistics_and_reward_scaling_match_the_gymnasium_path():
    rng = np.random.default_rng(0)
    obs_np, ret_np = RunningMeanStd((3,)), RunningMeanStd(())
    obs_j, ret_j = stats_init((3,)), stats_init(())
    vec = type("V", (), {"num_envs": 4, "obs_dim": 3,
                         "single_action_space": gym.spaces.Discrete(2)})()
    col = Collector(vec, None, num_steps=1, gamma=0.99, norm_obs=False, norm_reward=False,
                    clip_obs=10.0, clip_reward=10.0)
    disc = jnp.zeros(4)
    for _ in range(300):
        x = rng.normal(2.0, 3.0, (4, 3))
        obs_np.update(x)
        obs_j = stats_update(obs_j, jnp.asarray(x, jnp.float32))
        r = rng.normal(-5.0, 4.0, 4)
        want = col._scale_reward(r, ret_np)
        got, disc, ret_j = scale_reward(jnp.asarray(r, jnp.float32), disc, ret_j, 0.99, 10.0)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(obs_j.mean, obs_np.mean, rtol=1e-4)
    np.testing.assert_allclose(obs_j.var, obs_np.var, rtol=1e-3)
    np.testing.assert_allclose(ret_j.var, ret_np.var, rtol=1e-3)


@pytest.mark.parametrize("success", [False, True])
def test_episode_statistics_and_recent_100_match_a_deque(success):
    """...and, with success=True (MiniGrid tasks), the success rate of the iteration's
    episodes and of the last 100."""
    cfg = TrainConfig(algo="ppo", **{**TINY, "num_envs": 60})
    env = make_jax_env("gymnax", "Pendulum-v1")
    loop = Loop(cfg, ALGOS["ppo"], make_policy(env.observation_space, env.action_space), env,
                100, success=success)
    rng = np.random.default_rng(1)
    log = EpisodeLog(jnp.zeros(100), jnp.zeros((), jnp.int32),
                     jnp.zeros(100, bool) if success else None)
    ref = collections.deque(maxlen=100)
    ref_success = collections.deque(maxlen=100)
    metrics = jax.jit(loop.episode_metrics)
    for p in (0.0, 0.01, 0.3, 0.05):  # no episode, a few, > 100 in one iteration, some
        done = rng.random((64, 60)) < p
        ret = rng.normal(0, 100, (64, 60)).astype(np.float32)
        length = rng.integers(1, 500, (64, 60)).astype(np.int32)
        succ = rng.random((64, 60)) < 0.3  # only where done counts
        log, m = metrics(log, jnp.asarray(done), jnp.asarray(ret), jnp.asarray(length),
                         jnp.asarray(succ))
        finished = ret[done]  # (t, env) order, as the Gymnasium path lists them
        ref.extend(finished.tolist())
        ref_success.extend(succ[done].tolist())
        assert ("success_rate" in m) == success
        if success:
            assert recent_in_order(jax.device_get(log), "success") == list(ref_success)
            np.testing.assert_allclose(m["recent_success"],
                                       np.mean(ref_success) if ref_success else np.nan)
            np.testing.assert_allclose(m["success_rate"],
                                       succ[done].mean() if done.any() else np.nan, rtol=1e-6)
        assert int(m["episodes"]) == done.sum() and int(m["episodes_total"]) == int(log.count)
        if done.any():
            np.testing.assert_allclose(m["ep_return_mean"], finished.mean(), rtol=1e-5)
            assert float(m["ep_return_min"]) == finished.min()
            np.testing.assert_allclose(m["ep_length_mean"], length[done].mean(), rtol=1e-6)
        else:
            assert math.isnan(float(m["ep_return_mean"]))
        np.testing.assert_allclose(recent_in_order(jax.device_get(log)), list(ref), rtol=1e-6)
        np.testing.assert_allclose(m["recent_return"], np.mean(ref) if ref else np.nan,
                                   rtol=1e-5)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_every_method_traces_inside_the_vmapped_jitted_loop(algo):
    """Each method's own update runs inside the jitted, vmapped iteration as is (TRPO's line
    search and CG are lax loops; nothing needs the host), and no LAPACK call in it is batched
    over the seeds: vmapped, the orthogonal init's QR and ACKTR's eigh run one matrix at a
    time (mcpo.networks.one_matrix_at_a_time; a batched call can deadlock XLA's CPU thread
    pool, docs/design.md §3.1)."""
    cfg = mcpo.make_config(algo, "Pendulum-v1", backend="gymnax", num_envs=2, num_steps=32,
                           num_minibatches=2, update_epochs=1, total_timesteps=64)
    env = make_jax_env("gymnax", "Pendulum-v1")
    policy = make_policy(env.observation_space, env.action_space, cfg.hidden_sizes)
    loop = Loop(cfg, ALGOS[algo], policy, env, 100)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)])
    state = jax.eval_shape(jax.vmap(loop.init), keys)
    new, metrics = jax.eval_shape(jax.vmap(loop.iteration), state)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert metrics["stats"]["value_loss"].shape == (2,)
    calls = vmapped_lapack_calls(loop, keys)
    assert ("qr", (64, 64)) in calls  # the hidden layers' orthogonal init
    if algo == "acktr":
        assert any(name == "eigh" for name, _ in calls)
    assert all(len(shape) == 2 for _, shape in calls), calls


@pytest.mark.parametrize("kind,obs_shape", [("mlp", (3,)), ("minigrid", (7, 7, 3)),
                                            ("nature-cnn", (4, 84, 84))])
def test_a_vmapped_init_runs_each_seeds_qr_alone_with_the_same_numbers(kind, obs_shape):
    """Every network's init, vmapped over seeds, calls QR on one matrix at a time and gives
    each seed exactly the parameters it gets alone."""
    import gymnasium as gym

    space = (gym.spaces.Box(-1.0, 1.0, obs_shape, np.float32) if kind == "mlp"
             else gym.spaces.Box(0, 255, obs_shape, np.uint8))
    policy = make_policy(space, gym.spaces.Discrete(4), (64, 64), kind)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1, 2)])
    calls = lapack_operands(jax.make_jaxpr(jax.vmap(policy.init))(keys))
    assert calls and all(name == "qr" and len(shape) == 2 for name, shape in calls), calls
    together = jax.jit(jax.vmap(policy.init))(keys)
    for i, k in enumerate(keys):
        alone = jax.jit(policy.init)(k)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(together)):
            np.testing.assert_array_equal(a, b[i])


def test_the_unrolled_threefry_lowering_gives_the_same_iteration_bit_for_bit():
    """mcpo.trainer.unroll_threefry_on_cpu (what training sets up) changes speed, not bits: one
    PPO iteration (rollout, shuffles, update) with JAX's rolled CPU lowering and with it."""
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as threefry

    from mcpo.trainer import unroll_threefry_on_cpu

    cfg = mcpo.make_config("ppo", "Pendulum-v1", backend="gymnax", num_envs=2, num_steps=64,
                           num_minibatches=4, update_epochs=2, total_timesteps=128)
    env = make_jax_env("gymnax", "Pendulum-v1")
    loop = Loop(cfg, ALGOS["ppo"], make_policy(env.observation_space, env.action_space), env,
                100)
    state = jax.jit(loop.init)(jax.random.PRNGKey(3))
    out = {}
    try:
        for unrolled in (False, True):
            if unrolled:
                unroll_threefry_on_cpu()
            else:
                mlir.register_lowering(threefry.threefry2x32_p,
                                       threefry._threefry2x32_cpu_lowering_rule, platform="cpu")
            # a new function each time, so JAX lowers it again
            out[unrolled] = jax.device_get(jax.jit(lambda s: loop.iteration(s))(state))
    finally:
        unroll_threefry_on_cpu()
    for a, b in zip(jax.tree.leaves(out[False]), jax.tree.leaves(out[True])):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# Seeds, resume, load and eval through the API and CLI
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """Seeds 1, 2, 3 of PPO on Pendulum trained as one group: 6 iterations, a snapshot at 3."""
    root = tmp_path_factory.mktemp("group")
    cfg = TrainConfig(algo="ppo", run_dir=str(root / "g"), total_timesteps=6 * 128,
                      snapshots=2, **{**TINY, "eval_episodes": 2})
    results = mcpo.train(cfg, seeds=[1, 2, 3])
    return root, cfg, results


def test_a_group_writes_one_ordinary_run_dir_per_seed(group):
    root, _, results = group
    assert [r.seed for r in results] == [1, 2, 3]
    for r in results:
        d = root / "g" / f"Pendulum-v1__ppo__{r.seed}"
        assert r.run_dir == str(d) and r.complete and r.global_step == 6 * 128
        for f in ("run.json", "config.json", "metrics.csv", "result.json",
                  "checkpoints/latest.ckpt", "checkpoints/step_000000000384.ckpt"):
            assert (d / f).is_file(), f
        assert mcpo.TrainConfig.from_dict(json.loads((d / "config.json").read_text())).seed \
            == r.seed
        assert len(read_metrics(d / "metrics.csv")) == 6
        assert not math.isnan(r.eval_return_mean)


def test_vmapped_seeds_differ_and_each_matches_the_seed_trained_alone(group, tmp_path):
    root, cfg, _ = group
    runs = {s: _rows(root / "g" / f"Pendulum-v1__ppo__{s}") for s in (1, 2, 3)}
    assert runs[1][0]["ep_return_mean"] != runs[2][0]["ep_return_mean"]
    assert runs[2][-1]["policy_loss"] != runs[3][-1]["policy_loss"]
    # the same compiled program (a group of 3), seeds in another order: bit-identical
    mcpo.train(cfg.replace(run_dir=str(tmp_path / "p")), seeds=[3, 1, 2])
    for s in (1, 2, 3):
        np.testing.assert_equal(_rows(tmp_path / "p" / f"Pendulum-v1__ppo__{s}"), runs[s])
    # seed 2 alone is another XLA program (batch 1 instead of 3): equal to float tolerance
    # over the first iterations (rollouts diverge later, as any chaotic float computation)
    alone = mcpo.train(cfg.replace(run_dir=str(tmp_path / "alone"), seed=2))
    assert alone.seed == 2
    rows = _rows(tmp_path / "alone")
    for a, b in zip(rows[:2], runs[2][:2]):
        for k in ("ep_return_mean", "policy_loss", "value_loss", "kl_old_new", "entropy"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_mcpo_alone_runs_unbatched_with_its_slot_cache_and_matches_its_vmapped_twin(tmp_path):
    """A single seed is not vmapped (runner._one_seed), so MCPO's update keeps its slot
    cache (a real lax.cond, mcpo.algos.mcpo.caches_slots); in a vmapped group the same seed
    computes every slot on every minibatch instead. Same numbers to float tolerance over the
    first iterations."""
    from mcpo.algos.mcpo import caches_slots
    from mcpo.jaxenv.runner import GroupRunner

    tiny = {k: v for k, v in TINY.items() if k != "env_id"}
    cfg = mcpo.make_config("mcpo", "Pendulum-v1", **{**tiny, "num_minibatches": 4},
                           total_timesteps=3 * 128, memory_size=4)
    assert cfg.algo_config.attn_slot_features  # the default
    assert caches_slots(cfg.algo_config, batched=False)
    assert not caches_slots(cfg.algo_config, batched=True)
    runs = {}
    for name, seeds in (("alone", [2]), ("group", [2, 5])):
        c = cfg.replace(run_dir=str(tmp_path / name))
        grab = []

        class Grab(mcpo.Callback):
            def on_train_start(self, trainer):
                grab.append(trainer.group)

        res = mcpo.train(c, seeds=seeds, callbacks=[Grab()])
        runs[name] = _rows(Path(res[0].run_dir))
        assert isinstance(grab[0], GroupRunner) and len(grab[0].bounds) == 1
        assert grab[0].loop.batched == (len(seeds) > 1)
    writes = sum(r["memory_writes"] for r in runs["alone"])
    assert writes > 0  # the cache was rewritten on the batch along the way
    for a, b in zip(runs["alone"][:2], runs["group"][:2]):
        for k in ("ep_return_mean", "policy_loss", "value_loss", "attn_entropy",
                  "memory_writes", "alpha"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_resume_of_a_vmapped_group_is_exact(group, tmp_path):
    root, _, _ = group
    names = [f"Pendulum-v1__ppo__{s}" for s in (1, 2, 3)]
    copies = []
    for c in ("a", "b"):
        shutil.copytree(root / "g", tmp_path / c)
        copies.append([tmp_path / c / n for n in names])
    snap = "step_000000000384.ckpt"
    res_a = mcpo.resume(copies[0], resume_from=snap)
    res_b = mcpo.resume(copies[1], resume_from=snap)
    for i, n in enumerate(names):
        ref = _rows(root / "g" / n)
        np.testing.assert_equal(_rows(copies[0][i]), ref)  # == the uninterrupted run
        np.testing.assert_equal(_rows(copies[1][i]), ref)
        assert res_a[i].eval_return_mean == res_b[i].eval_return_mean
    # one run of the group also resumes alone (a group of one): close, not bit-identical
    solo = mcpo.resume(copies[0][1], resume_from=snap)
    assert solo.global_step == 6 * 128 and solo.seed == 2
    np.testing.assert_allclose(_rows(copies[0][1])[3]["value_loss"],
                               _rows(root / "g" / names[1])[3]["value_loss"], rtol=1e-3)


# A group trained, or resumed from its snapshot, in a child process with two CPU devices.
TWO_DEVICES = """
import json, sys
import mcpo
from mcpo.config import TrainConfig
if sys.argv[1] == "train":
    cfg = TrainConfig.from_dict(json.loads(sys.argv[2]))
    mcpo.train(cfg, seeds=[1, 2, 3, 4, 5])
    mcpo.train(cfg.replace(run_dir=sys.argv[3], seed=5))  # seed 5 alone: a group of one
else:
    mcpo.resume(sys.argv[2:], resume_from="step_000000000384.ckpt")
"""


def test_a_group_split_over_two_cpu_devices_learns_alike_and_resumes_exactly(group, tmp_path):
    """$MCPO_CPU_DEVICES=2: seeds 1, 2 run vmapped on one CPU device, seeds 3, 4 on the other
    and seed 5 floats between them (mcpo.jaxenv.runner.seed_layout); each seed learns as in the
    one-device group (other XLA programs: float tolerance over the first iterations), the
    floating seed exactly as seed 5 trained alone, and resuming the split group from its
    snapshot gives the uninterrupted split run exactly, twice."""
    import os
    root, cfg, _ = group
    env = {**os.environ, "MCPO_CPU_DEVICES": "2"}

    def child(*args):
        p = subprocess.run([sys.executable, "-c", TWO_DEVICES, *args], env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]

    child("train", json.dumps(cfg.replace(run_dir=str(tmp_path / "d")).to_dict()),
          str(tmp_path / "alone"))
    seeds = (1, 2, 3, 4, 5)
    names = [f"Pendulum-v1__ppo__{s}" for s in seeds]
    marker = json.loads((tmp_path / "d" / names[0] / "run.json").read_text())
    assert [h for h in marker["history"] if h["event"] == "group"][0]["programs"] == [
        {"seeds": [1, 2], "device": 0}, {"seeds": [3, 4], "device": 1},
        {"seeds": [5], "device": "rotating"}]
    split = {n: _rows(tmp_path / "d" / n) for n in names}
    for n in names[:3]:  # the one-device group of the fixture: seeds 1, 2, 3
        assert len(split[n]) == 6
        for a, b in zip(split[n][:2], _rows(root / "g" / n)[:2]):
            for k in ("ep_return_mean", "policy_loss", "value_loss", "kl_old_new", "entropy"):
                np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-5, err_msg=k)
    np.testing.assert_equal(split[names[4]], _rows(tmp_path / "alone"))
    assert split[names[0]][-1]["policy_loss"] != split[names[2]][-1]["policy_loss"]
    for c in ("a", "b"):
        shutil.copytree(tmp_path / "d", tmp_path / c)
        child("resume", *(str(tmp_path / c / n) for n in names))
        for n in names:
            np.testing.assert_equal(_rows(tmp_path / c / n), split[n])


def _train_with_layout(cfgs, layout, callbacks=()):
    """Train a group with an explicit layout of its seeds over the devices (GroupRunner's
    `layout`), as mcpo.train would otherwise."""
    import contextlib
    from mcpo.rundir import RunDir

    with contextlib.ExitStack() as stack:
        for c in cfgs:
            stack.enter_context(RunDir.create(Path(c.run_dir), c, False))
        return GroupRunner(cfgs, callbacks, layout=layout).run()


def test_a_floating_seed_is_its_own_run_and_a_stop_discards_what_ran_ahead(tmp_path):
    """A layout with a floating seed (mcpo.jaxenv.runner.seed_layout; here on this process's
    one device): the group runs two iterations ahead. The floating seed's numbers are those of
    that seed trained alone, bit for bit (the same one-seed program), the vmapped pair's those
    of the pair trained as a group; a callback that stops the group after iteration 3 leaves
    iteration 3's rows and states, not those of the iterations dispatched after it."""
    from mcpo.jaxenv.runner import Program

    base = TrainConfig(algo="ppo", total_timesteps=6 * 128, snapshots=2, **TINY)
    layout = [Program(0, 2, 0), Program(2, 3, None, 0)]

    def configs(name, seeds):
        return mcpo.api.group_configs(base.replace(run_dir=str(tmp_path / name / "{seed}")),
                                      seeds)

    _train_with_layout(configs("f", [1, 2, 3]), layout)
    mcpo.train(configs("alone", [3])[0])
    mcpo.train(base.replace(run_dir=str(tmp_path / "pair" / "{seed}")), seeds=[1, 2])
    np.testing.assert_equal(_rows(tmp_path / "f" / "3"), _rows(tmp_path / "alone" / "3"))
    for s in (1, 2):
        np.testing.assert_equal(_rows(tmp_path / "f" / str(s)), _rows(tmp_path / "pair" / str(s)))
    assert _rows(tmp_path / "f" / "1")[-1]["policy_loss"] \
        != _rows(tmp_path / "f" / "3")[-1]["policy_loss"]

    class StopAfter3(mcpo.Callback):
        def on_iteration(self, trainer, row):
            return False if row["iteration"] == 3 else None

    res = _train_with_layout(configs("s", [1, 2, 3]), layout, [StopAfter3()])
    assert [r.complete for r in res] == [False] * 3
    for s in ("1", "2", "3"):
        np.testing.assert_equal(_rows(tmp_path / "s" / s), _rows(tmp_path / "f" / s)[:3])
        got, meta = load_checkpoint(tmp_path / "s" / s / "checkpoints" / "latest.ckpt")
        ref, _ = load_checkpoint(tmp_path / "f" / s / "checkpoints" / "step_000000000384.ckpt")
        assert meta["iteration"] == 3 and got.keys() == ref.keys()
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_group_resume_refuses_runs_at_different_steps_or_configs(group, tmp_path):
    root, _, _ = group
    g = root / "g"
    for s in (1, 2, 3):
        shutil.copytree(g / f"Pendulum-v1__ppo__{s}", tmp_path / str(s))
    ck = tmp_path / "2" / "checkpoints"
    shutil.copyfile(ck / "step_000000000384.ckpt", ck / "latest.ckpt")  # seed 2 back at 384
    with pytest.raises(ConfigError, match="different steps"):
        mcpo.resume([tmp_path / "1", tmp_path / "2"])
    conf = tmp_path / "3" / "config.json"
    conf.write_text(conf.read_text().replace('"learning_rate": 0.0003',
                                             '"learning_rate": 0.001'))
    with pytest.raises(ConfigError, match="differ in learning_rate"):
        mcpo.resume([tmp_path / "1", tmp_path / "3"])


def test_load_and_eval_a_gymnax_run_on_gymnax_and_on_its_gymnasium_twin(group, capsys):
    root, _, results = group
    d = root / "g" / "Pendulum-v1__ppo__1"
    agent = mcpo.load(d)
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        a = agent.act(obs)
        assert env.action_space.contains(a)
        obs, *_ = env.step(a)
    assert main(["eval", str(d), "--episodes", "3", "--deterministic"]) == 0
    assert "over 3 episodes (deterministic, gymnax)" in capsys.readouterr().out
    assert main(["eval", str(d), "--episodes", "2", "--backend", "gymnasium"]) == 0
    assert "(stochastic, gymnasium)" in capsys.readouterr().out
    assert main(["eval", str(d), "--video", "x.gif"]) == 2
    assert "Gymnasium twin 'Pendulum-v1'" in capsys.readouterr().err


def test_cli_seeds_and_refusals(tmp_path, capsys):
    # the settings of the `group` fixture (one compiled program for both)
    args = ["train", "--algo", "ppo", "--env-id", "Pendulum-v1", "--num-envs", "2",
            "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "2",
            "--no-progress", "--no-tensorboard", "--eval-episodes", "2",
            "--total-timesteps", "768", "--snapshots", "2"]
    assert main(args + ["--seeds", "0,1"]) == 2
    assert "needs a pure-JAX backend" in capsys.readouterr().err
    assert main(args + ["--backend", "gymnax", "--seeds", "4,4"]) == 2
    assert "seed twice" in capsys.readouterr().err
    assert main(args + ["--backend", "gymnax", "--seeds", "1,2", "--seed", "3",
                        "--run-dir", str(tmp_path / "x{seed}")]) == 2
    assert "--seed and --seeds cannot be given together" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    run = str(tmp_path / "s{seed}")
    assert main(args + ["--backend", "gymnax", "--seeds", "5,6,7", "--run-dir", run]) == 0
    out = capsys.readouterr().out
    assert "Group: 3 runs" in out and (tmp_path / "s5" / "result.json").is_file()
    assert main(["train", "--resume", str(tmp_path / "s5"), "--seeds", "1"]) == 2


# --------------------------------------------------------------------------------------------
# Learning: the same algorithm, env, seed and budget as tests/test_learning.py's Gymnasium runs
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "mcpo"])
def test_solves_cartpole_on_gymnax_within_the_gymnasium_budget(tmp_path, algo):
    """tests/test_learning.py::test_learns_cartpole solves CartPole-v1 with these settings on
    Gymnasium; the same criterion and budget here, on gymnax."""
    cfg = TrainConfig(algo=algo, run_dir=str(tmp_path / "r"), progress=False,
                      tensorboard=False, eval_episodes=10, seed=1, backend="gymnax",
                      **CARTPOLE_QUICK)
    result = mcpo.train(cfg)
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert rows[0]["ep_return_mean"] < 60  # starts near random
    solved, why = cartpole_solved(result, rows)
    assert solved, (algo, why)


def test_a_nan_names_the_seed_and_the_checkpoints_kept(tmp_path):
    cfgs = mcpo.api.group_configs(TrainConfig(algo="ppo", run_dir=str(tmp_path / "{seed}"),
                                              total_timesteps=768, **TINY), [4, 5, 6])
    runner = GroupRunner(cfgs)
    ok = np.array([True, True, True])
    finite = {"observations": ok, "rewards": ok}
    runner._check_finite({"finite": finite, "stats": {"value_loss": np.array([0.5, 1.0, 2])}})
    with pytest.raises(NonFiniteError, match=r"value_loss at iteration 1 .* of "
                                             r".*5 \(seed 5\)\. The runs stopped; no "
                                             r"checkpoint had been written"):
        runner._check_finite({"finite": finite,
                              "stats": {"value_loss": np.array([0.5, np.nan, 2])}})
    runner.saved_iteration = 3
    with pytest.raises(NonFiniteError, match=r"observations .* of .*4 \(seed 4\), .*6 "
                                             r"\(seed 6\).*latest.ckpt of each run \(iteration 3\).*"
                                             r"--resume .*4 .*5 .*6"):
        runner._check_finite({"finite": {"observations": np.array([False, True, False]),
                                         "rewards": ok}, "stats": {}})


@pytest.mark.slow
def test_a_signal_checkpoints_the_whole_group_and_the_group_resumes(tmp_path):
    args = [sys.executable, "-m", "mcpo", "train", "--backend", "gymnax", "--algo", "ppo",
            "--env-id", "Pendulum-v1", "--num-envs", "2", "--num-steps", "512",
            "--num-minibatches", "8", "--update-epochs", "4", "--no-progress",
            "--eval-episodes", "0", "--checkpoint-every", "50"]
    total = 300 * 1024
    proc = subprocess.Popen(args + ["--seeds", "1,2", "--run-dir", str(tmp_path / "s{seed}"),
                                    "--total-timesteps", str(total)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not ((tmp_path / "s1" / "metrics.csv").exists()
               and len(read_metrics(tmp_path / "s1" / "metrics.csv")) >= 3):
        assert proc.poll() is None and time.time() - t0 < 180, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received: checkpoint written" in err and "Traceback" not in err
    assert f"--resume {tmp_path / 's1'} {tmp_path / 's2'}" in err
    done = []
    for s in ("s1", "s2"):
        _, meta = load_checkpoint(tmp_path / s / "checkpoints" / "latest.ckpt")
        assert meta["iteration"] == len(read_metrics(tmp_path / s / "metrics.csv")) < 300
        assert meta["lost_episodes"] == 0
        done.append(meta["iteration"])
    assert done[0] == done[1]
    out = subprocess.run([sys.executable, "-m", "mcpo", "train", "--no-progress", "--resume",
                          str(tmp_path / "s1"), str(tmp_path / "s2")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for s in ("s1", "s2"):
        rows = read_metrics(tmp_path / s / "metrics.csv")
        assert [int(r["iteration"]) for r in rows] == list(range(1, 301))


def test_acktr_trains_as_a_vmapped_group_and_each_seed_matches_it_alone(tmp_path):
    """ACKTR's eigendecompositions, batched over vmapped seeds, deadlocked XLA's CPU runtime
    (until 2026-12-06 `--seeds` refused ACKTR); one matrix at a time they run: 2 seeds train
    as one group, differ, and each matches the seed trained alone to float tolerance over
    the first iterations; the group resumes from its snapshot exactly (K-FAC's factor
    statistics and step count are part of the vmapped state)."""
    cfg = mcpo.make_config("acktr", "Pendulum-v1", backend="gymnax", num_envs=2, num_steps=64,
                           progress=False, tensorboard=False, eval_episodes=0,
                           total_timesteps=4 * 128, snapshots=2)
    results = mcpo.train(cfg.replace(run_dir=str(tmp_path / "g")), seeds=[1, 2])
    assert [r.seed for r in results] == [1, 2] and all(r.complete for r in results)
    names = [f"Pendulum-v1__acktr__{s}" for s in (1, 2)]
    runs = {s: _rows(tmp_path / "g" / n) for s, n in zip((1, 2), names)}
    assert runs[1][0]["ep_return_mean"] != runs[2][0]["ep_return_mean"]
    mcpo.train(cfg.replace(run_dir=str(tmp_path / "alone"), seed=2))
    rows = _rows(tmp_path / "alone")
    assert len(rows) == len(runs[2]) == 4
    for a, b in zip(rows[:2], runs[2][:2]):
        for k in ("ep_return_mean", "policy_loss", "value_loss", "entropy"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-5, err_msg=k)
    shutil.copytree(tmp_path / "g", tmp_path / "r")
    mcpo.resume([tmp_path / "r" / n for n in names], resume_from="step_000000000256.ckpt")
    for s, n in zip((1, 2), names):
        np.testing.assert_equal(_rows(tmp_path / "r" / n), runs[s])
