"""Checkpoints: safe format, corruption detection, exact resume, NaN stops the run."""

import shutil

import numpy as np
import pytest

import mcpo
import toy_envs
from mcpo.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from mcpo.logger import read_metrics
from mcpo.trainer import NonFiniteError, resume

toy_envs.register()
TINY = dict(env_id="Pendulum-v1", num_envs=2, num_steps=64, num_minibatches=2,
            update_epochs=2, progress=False, tensorboard=False, eval_episodes=0)
TIME_COLUMNS = {"wall_time", "sps", "rollout_time", "update_time"}


def test_round_trip_and_template_checks(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(True),
              "c": np.array([1, 2], np.int32)}
    save_checkpoint(tmp_path / "x.ckpt", arrays, {"iteration": 3, "name": "z"})
    loaded, meta = load_checkpoint(tmp_path / "x.ckpt")
    assert meta == {"iteration": 3, "name": "z"}
    for k in arrays:
        np.testing.assert_array_equal(loaded[k], arrays[k])
        assert loaded[k].dtype == arrays[k].dtype and loaded[k].shape == arrays[k].shape
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]  # no temp file left behind
    tree = restore({"a": np.zeros((2, 3), np.float32)}, {"['a']": loaded["a"]})
    np.testing.assert_array_equal(tree["a"], arrays["a"])
    with pytest.raises(CheckpointError, match="shape"):
        restore({"a": np.zeros((3, 3), np.float32)}, {"['a']": loaded["a"]})
    with pytest.raises(CheckpointError, match="lacks"):
        restore({"q": np.zeros(1)}, {"['a']": loaded["a"]})


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "missing"])
def test_corrupt_checkpoint_is_refused(tmp_path, damage):
    path = tmp_path / "x.ckpt"
    save_checkpoint(path, {"a": np.ones(100, np.float32)}, {"i": 1})
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "flip":
        raw[-10] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04pickle?")
    else:
        path.unlink()
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows]


# Algorithms whose learner state goes beyond params + one Adam state: MCPO's memory, psi_old,
# attention net and its optimizer; KL-Adaptive's beta; TRPO's critic-only optimizer; ACKTR's
# Kronecker factors and momentum (no optax state); V-MPO's dual variables and their Adam.
@pytest.mark.parametrize("algo", ["mcpo", "kl-adaptive", "trpo", "acktr", "vmpo"])
def test_resuming_twice_from_one_checkpoint_gives_identical_metrics(tmp_path, algo):
    base = tmp_path / "base"
    one_step = dict(update_epochs=1, num_minibatches=1) if algo == "acktr" else {}
    mcpo.train(mcpo.TrainConfig(algo=algo, run_dir=str(base), total_timesteps=3 * 128,
                                checkpoint_every=1, **{**TINY, **one_step}))
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(base, a)
    shutil.copytree(base, b)
    ra = resume(a, total_timesteps=6 * 128)
    rb = resume(b, total_timesteps=6 * 128)
    assert ra.global_step == rb.global_step == 6 * 128
    rows_a, rows_b = read_metrics(a / "metrics.csv"), read_metrics(b / "metrics.csv")
    assert [r["iteration"] for r in rows_a] == [1, 2, 3, 4, 5, 6]
    sa, sb = _strip(rows_a), _strip(rows_b)
    np.testing.assert_equal(sa, sb)
    # the resumed part really trained (losses present and parameters moved)
    assert not np.isnan(rows_a[-1]["value_loss"])
    # and the first 3 rows are the original run's
    np.testing.assert_equal(sa[:3], _strip(read_metrics(base / "metrics.csv")))


def test_resume_drops_rows_written_after_the_checkpoint(tmp_path):
    run = tmp_path / "r"
    mcpo.train(mcpo.TrainConfig(algo="ppo", run_dir=str(run), total_timesteps=2 * 128, **TINY))
    with open(run / "metrics.csv", "a") as f:  # as if killed after logging iteration 3
        f.write("3,384" + ",0" * 30 + "\r\n")
    resume(run, total_timesteps=4 * 128)
    assert [r["iteration"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4]


def test_nan_reward_stops_the_run_naming_it_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "nan"
    cfg = mcpo.TrainConfig(algo="ppo", run_dir=str(run), total_timesteps=20 * 128,
                           checkpoint_every=1, **{**TINY, "env_id": "mcpo_test/NanReward-v0"})
    with pytest.raises(NonFiniteError, match=r"rewards at iteration 5 .*intact"):
        mcpo.train(cfg)  # NaN from env step 300: iteration 5 with 64 steps per env
    _, meta = load_checkpoint(run / "checkpoints" / "latest.ckpt")
    assert meta["iteration"] == 4
    assert len(read_metrics(run / "metrics.csv")) == 4


def test_nan_in_the_learner_stops_the_run_naming_the_quantity(tmp_path):
    run = tmp_path / "nan2"
    cfg = mcpo.TrainConfig(algo="ppo", run_dir=str(run), total_timesteps=20 * 128,
                           checkpoint_every=1, **{**TINY, "env_id": "mcpo_test/HugeReward-v0",
                                                  "norm_reward": False})
    with pytest.raises(NonFiniteError, match=r"Non-finite value \(NaN or Inf\) in the "
                                             r"(\w+|learner state, .*) at iteration \d+") as e:
        mcpo.train(cfg)
    it = int(str(e.value).split("at iteration ")[1].split()[0])
    if it > 1:
        _, meta = load_checkpoint(run / "checkpoints" / "latest.ckpt")
        assert meta["iteration"] == it - 1


def test_evenly_spaced_snapshots_are_kept(tmp_path):
    run = tmp_path / "snap"
    mcpo.train(mcpo.TrainConfig(algo="ppo", run_dir=str(run), total_timesteps=8 * 128,
                                snapshots=4, **TINY))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["latest.ckpt"] + [f"step_{s:012d}.ckpt" for s in (256, 512, 768, 1024)]
    agent = mcpo.load(run, "step_000000000256.ckpt")  # a snapshot is a usable checkpoint
    assert agent.act(np.zeros(3, np.float32)).shape == (1,)
