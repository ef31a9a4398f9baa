"""The command line: smoke runs, help, and every bad-input case (clear error, exit 2,
nothing on disk touched)."""

import hashlib
import os

import pytest

from mcpo.cli import main
from mcpo.logger import read_metrics

TINY = ["--env-id", "Pendulum-v1", "--num-envs", "2", "--num-steps", "64",
        "--num-minibatches", "2", "--update-epochs", "2", "--no-progress",
        "--eval-episodes", "2"]


def snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns, hashlib.sha256(open(p, "rb").read()).hexdigest())
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished MCPO run made through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    run = root / "run"
    code = main(["train", "--algo", "mcpo", "--memory-size", "3", "--total-timesteps", "256",
                 "--run-dir", str(run), *TINY])
    assert code == 0
    return root, run


def test_train_writes_a_complete_run_dir(trained, capsys):
    _, run = trained
    for p in ["config.json", "metrics.csv", "result.json", "checkpoints/latest.ckpt"]:
        assert (run / p).is_file(), p
    assert any((run / "tb").iterdir())
    rows = read_metrics(run / "metrics.csv")
    assert [r["iteration"] for r in rows] == [1, 2]
    for col in ["global_step", "wall_time", "sps", "ep_return_mean", "policy_loss",
                "value_loss", "approx_kl", "entropy", "alpha", "beta_max_frac",
                "memory_writes", "memory_fill", "attn_weights_0", "attn_weights_2",
                "attn_argmax", "d_old_theta", "d_old_psi", "kl_old_new"]:
        assert col in rows[0], col


def test_train_prints_a_summary(tmp_path, capsys):
    code = main(["train", "--algo", "ppo", "--total-timesteps", "128",
                 "--run-dir", str(tmp_path / "r"), *TINY])
    out = capsys.readouterr().out
    assert code == 0
    assert "Done: ppo on Pendulum-v1" in out and "eval return" in out


def test_eval_prints_mean_and_std_and_writes_video(trained, capsys):
    root, run = trained
    video = root / "ep.gif"
    assert main(["eval", str(run), "--episodes", "2", "--deterministic",
                 "--video", str(video)]) == 0
    out = capsys.readouterr().out
    assert "Pendulum-v1: return" in out and "+-" in out and "over 2 episodes" in out
    assert video.stat().st_size > 1000


def test_help_lists_every_hyperparameter(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ["--algo", "--env-id", "--total-timesteps", "--seed", "--num-envs",
                 "--run-dir", "--num-steps", "--update-epochs", "--num-minibatches",
                 "--learning-rate", "--gamma", "--gae-lambda", "--clip-coef", "--kl-beta",
                 "--kl-target", "--memory-size", "--beta-max", "--beta-min", "--resume",
                 "--overwrite"]:
        assert flag in out, flag
    assert "(default: 0.2" in out  # defaults are shown


BAD = [
    (["--env-id", "Pendulm-v1"], "Did you mean 'Pendulum-v1'"),
    (["--algo", "mcpx"], "Unknown algorithm 'mcpx'. Did you mean 'mcpo'"),
    (["--memory-size", "0"], "--memory-size must be >= 1"),
    (["--beta-min", "20"], "--beta-min (20.0) must be smaller than --beta-max"),
    (["--num-minibatches", "4096"], "minibatch is larger than the batch"),
    (["--total-timesteps", "0"], "--total-timesteps must be >= 1"),
    (["--total-timesteps", "-100"], "--total-timesteps must be >= 1"),
    (["--total-timesteps", "100"], "smaller than one rollout batch"),
    (["--algo", "ppo", "--memory-size", "5"], "--memory-size does not apply to --algo ppo"),
    (["--gamma", "1.5"], "--gamma must be >= 0 and <= 1; got 1.5"),
    (["--learning-rate", "0"], "--learning-rate must be > 0 and <= 1; got 0.0"),
    (["--alpha-rule", "fixd:0"], "Did you mean 'fixed:0'"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys, args, message):
    run = tmp_path / "new_run"
    before = snapshot(tmp_path)
    assert main(["train", "--run-dir", str(run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not run.exists()
    assert snapshot(tmp_path) == before


def test_existing_run_dir_needs_resume_or_overwrite(trained, capsys):
    root, run = trained
    before = snapshot(root)
    assert main(["train", "--run-dir", str(run), *TINY, "--total-timesteps", "128"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert snapshot(root) == before


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "thesis.tex").write_text("do not delete")
    before = snapshot(tmp_path)
    assert main(["train", "--run-dir", str(d), "--overwrite", *TINY,
                 "--total-timesteps", "128"]) == 2
    assert "not an mcpo run directory" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_overwrite_with_bad_input_keeps_the_old_run(trained, capsys):
    root, run = trained
    before = snapshot(root)
    assert main(["train", "--run-dir", str(run), "--overwrite", "--memory-size", "0"]) == 2
    assert snapshot(root) == before


@pytest.mark.parametrize("case", ["missing_dir", "no_checkpoint", "corrupt", "extra_flag"])
def test_resume_bad_input(tmp_path, trained, capsys, case):
    import shutil

    root, run = trained
    target = tmp_path / "copy"
    if case == "missing_dir":
        target = tmp_path / "nope"
    else:
        shutil.copytree(run, target)
    if case == "no_checkpoint":
        (target / "checkpoints" / "latest.ckpt").unlink()
    if case == "corrupt":
        p = target / "checkpoints" / "latest.ckpt"
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0x55
        p.write_bytes(bytes(raw))
    before = snapshot(tmp_path)
    extra = ["--learning-rate", "1e-3"] if case == "extra_flag" else []
    assert main(["train", "--resume", str(target), "--total-timesteps", "512", *extra]) == 2
    err = capsys.readouterr().err
    expected = {"missing_dir": "no such directory", "no_checkpoint": "--resume-from",
                "corrupt": "corrupt", "extra_flag": "--learning-rate cannot be changed"}[case]
    assert expected in err
    assert snapshot(tmp_path) == before


def test_resume_extends_a_finished_run(tmp_path, trained, capsys):
    import shutil

    _, run = trained
    target = tmp_path / "ext"
    shutil.copytree(run, target)
    assert main(["train", "--resume", str(target), "--total-timesteps", "512",
                 "--no-progress"]) == 0
    rows = read_metrics(target / "metrics.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["global_step"] == 512


def test_eval_bad_input(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not an mcpo run directory" in capsys.readouterr().err
