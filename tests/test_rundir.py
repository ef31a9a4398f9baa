"""The run-directory format: the marker, --overwrite that can never delete what a run did not
write, one process per run directory (a real second process), budget changes recorded in
run.json, --resume-from, and runs written before the marker existed."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import tree, wait_for
from mcpo.cli import main
from mcpo.logger import read_metrics
from mcpo.rundir import LOCK, MARKER, read_config

DATA = Path(__file__).parent / "data" / "legacy_v1"
TINY = ["--env-id", "Pendulum-v1", "--num-envs", "2", "--num-steps", "64",
        "--num-minibatches", "2", "--update-epochs", "2", "--no-progress",
        "--eval-episodes", "0", "--no-tensorboard"]
TIME_COLUMNS = {"wall_time", "sps", "rollout_time", "update_time"}


def train_tiny(run, *extra) -> int:
    return main(["train", "--algo", "ppo", "--run-dir", str(run), "--total-timesteps", "256",
                 *TINY, *extra])


def test_a_new_run_writes_its_marker_first_and_never_rewrites_config_json(tmp_path, capsys):
    run = tmp_path / "r"
    assert train_tiny(run) == 0
    marker = json.loads((run / MARKER).read_text())
    assert marker["format"] == "mcpo-run" and marker["version"] == 2
    assert marker["command"][:2] == ["mcpo", "train"] and marker["history"] == []
    config_before = (run / "config.json").read_bytes()
    assert main(["train", "--resume", str(run), "--total-timesteps", "512",
                 "--no-progress"]) == 0
    assert (run / "config.json").read_bytes() == config_before  # the original config
    hist = json.loads((run / MARKER).read_text())["history"]
    assert [(h["event"], h["total_timesteps"], h["previous"], h["at_step"]) for h in hist] \
        == [("budget", 512, 256, 256)]
    assert read_config(run).total_timesteps == 512  # the effective config
    assert [r["iteration"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3, 4]


def test_a_smaller_budget_than_done_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "r"
    assert train_tiny(run) == 0
    before = tree(run)
    assert main(["train", "--resume", str(run), "--total-timesteps", "128"]) == 2
    err = capsys.readouterr().err
    assert "--total-timesteps 128 is less than the 256 steps" in err
    assert tree(run) == before


def test_overwrite_refuses_a_folder_that_merely_holds_a_config_json(tmp_path, capsys):
    """The data-loss case: a user's project folder with a file named config.json."""
    d = tmp_path / "project"
    d.mkdir()
    (d / "config.json").write_text('{"my": "settings"}')
    (d / "paper.tex").write_text("precious")
    before = tree(d)
    assert train_tiny(d, "--overwrite") == 2
    assert "not an mcpo run directory (no run.json)" in capsys.readouterr().err
    assert tree(d) == before


def test_overwrite_refuses_and_names_files_a_run_did_not_write(tmp_path, capsys):
    run = tmp_path / "r"
    assert train_tiny(run) == 0
    (run / "notes.txt").write_text("mine")
    (run / "checkpoints" / "best_by_hand.ckpt").write_text("mine too")
    before = tree(run)
    assert train_tiny(run, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "checkpoints/best_by_hand.ckpt, notes.txt" in err and "Nothing was deleted" in err
    assert tree(run) == before


def test_overwrite_replaces_a_run_and_only_what_it_wrote(tmp_path, capsys):
    run = tmp_path / "r"
    assert train_tiny(run, "--snapshots", "2") == 0
    assert any(p.name.startswith("step_") for p in (run / "checkpoints").iterdir())
    first = json.loads((run / MARKER).read_text())["created"]
    assert train_tiny(run, "--overwrite", "--snapshots", "0", "--seed", "7") == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.ckpt"]
    assert read_config(run).seed == 7 and json.loads((run / MARKER).read_text())["created"]
    assert first is not None


def test_a_symlinked_run_dir_is_refused(tmp_path, capsys):
    real = tmp_path / "real"
    assert train_tiny(real) == 0
    link = tmp_path / "link"
    link.symlink_to(real)
    before = tree(real)
    assert train_tiny(link, "--overwrite") == 2
    assert "symbolic link" in capsys.readouterr().err
    assert main(["train", "--resume", str(link)]) == 2
    assert tree(real) == before


def test_a_path_component_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert train_tiny(tmp_path / "afile" / "run") == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_missing_latest_checkpoint_points_to_resume_from_and_it_works(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--algo", "ppo", "--run-dir", str(run), "--total-timesteps", "512",
                 "--snapshots", "2", *TINY]) == 0
    (run / "checkpoints" / "latest.ckpt").unlink()
    before = tree(run)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--resume-from step_000000000512.ckpt" in err and "--overwrite" not in err
    assert tree(run) == before
    assert main(["train", "--resume", str(run), "--resume-from", "step_000000000256.ckpt",
                 "--total-timesteps", "768", "--no-progress"]) == 0
    rows = read_metrics(run / "metrics.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
    events = [h["event"] for h in json.loads((run / MARKER).read_text())["history"]]
    assert events == ["budget", "resume_from"]


@pytest.mark.parametrize("algo", ["ppo", "mcpo"])
def test_a_run_written_before_the_marker_resumes_exactly_as_before(tmp_path, capsys, algo):
    """tests/data/legacy_v1: runs made by the code before run.json existed (256 steps), and
    the metrics the same code wrote when resumed to 512 steps."""
    run = tmp_path / algo
    shutil.copytree(DATA / algo, run)
    assert train_tiny(run, "--overwrite") == 2  # no marker: never deleted
    assert "older mcpo" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--total-timesteps", "512",
                 "--no-progress"]) == 0
    marker = json.loads((run / MARKER).read_text())
    assert marker["adopted_from_version"] == 1
    got = read_metrics(run / "metrics.csv")
    want = read_metrics(DATA / f"{algo}_resumed_to_512_metrics.csv")
    assert [r["iteration"] for r in got] == [1, 2, 3, 4]
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for k in g:
            if k not in TIME_COLUMNS:
                np.testing.assert_allclose(g[k], w[k], rtol=1e-4, atol=1e-7, err_msg=k)


# ----------------------------------------------------------------------------------------------
# One process per run directory (real processes)
# ----------------------------------------------------------------------------------------------
# ~50 ms per iteration: long enough (~20 s) for a second process to try its luck meanwhile
SLOW_RUN = ["--algo", "ppo", "--env-id", "Pendulum-v1", "--num-envs", "1", "--num-steps",
            "256", "--num-minibatches", "32", "--update-epochs", "10", "--checkpoint-every",
            "1", "--no-progress", "--eval-episodes", "0", "--no-tensorboard",
            "--total-timesteps", str(400 * 256)]


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mcpo", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_a_second_process_is_refused_while_a_run_trains_then_a_killed_run_resumes(tmp_path):
    run = tmp_path / "busy"
    first = subprocess.Popen([sys.executable, "-m", "mcpo", "train", "--run-dir", str(run),
                              *SLOW_RUN], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        wait_for(lambda: (run / "metrics.csv").exists()
                 and len(read_metrics(run / "metrics.csv")) >= 2, first)
        for args in (["train", "--resume", str(run)],
                     ["train", "--run-dir", str(run), "--overwrite", *SLOW_RUN]):
            t0 = time.time()
            second = cli(*args)
            assert second.returncode == 4, second.stderr
            assert f"in use by process {first.pid}" in second.stderr
            assert str(run) in second.stderr and "Traceback" not in second.stderr
            assert time.time() - t0 < 60
        assert first.poll() is None  # the first run was not disturbed
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    assert (run / LOCK).exists()  # stale lock file of the killed process: no obstacle
    done = cli("train", "--resume", str(run), "--no-progress", timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, 401))  # none lost or doubled
