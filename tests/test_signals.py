"""A run killed at any moment resumes; SIGINT/SIGTERM write a checkpoint and exit cleanly."""

import json
import signal
import subprocess
import sys
import time

import pytest

from mcpo.checkpoint import load_checkpoint
from mcpo.logger import read_metrics

pytestmark = pytest.mark.slow
ARGS = ["--algo", "mcpo", "--env-id", "Pendulum-v1", "--num-envs", "1", "--num-steps", "256",
        "--num-minibatches", "4", "--update-epochs", "2", "--checkpoint-every", "1",
        "--no-progress", "--eval-episodes", "0"]
TOTAL = 60 * 256


def start(run, *extra):
    return subprocess.Popen([sys.executable, "-m", "mcpo", "train", "--run-dir", str(run),
                             "--total-timesteps", str(TOTAL), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(proc, run, n, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        if (run / "checkpoints" / "latest.ckpt").exists() and (run / "metrics.csv").exists():
            if len(read_metrics(run / "metrics.csv")) >= n:
                return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the run")


def test_sigkill_then_resume_completes_the_run(tmp_path):
    run = tmp_path / "killed"
    proc = start(run)
    wait_for_rows(proc, run, 5)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    _, meta = load_checkpoint(run / "checkpoints" / "latest.ckpt")
    assert meta["iteration"] >= 4
    done = subprocess.run([sys.executable, "-m", "mcpo", "train", "--resume", str(run),
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, 61))
    assert json.loads((run / "result.json").read_text())["global_step"] == TOTAL
    _, meta = load_checkpoint(run / "checkpoints" / "latest.ckpt")
    assert meta["global_step"] == TOTAL


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    run = tmp_path / "stopped"
    proc = start(run)
    wait_for_rows(proc, run, 3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    # --checkpoint-every 1: the last completed iteration's checkpoint was already written
    assert f"{signal.Signals(sig).name} received: the checkpoint at step " in err
    assert "holds every completed iteration. Resume with: mcpo train --resume" in err
    assert "Traceback" not in err
    _, meta = load_checkpoint(run / "checkpoints" / "latest.ckpt")
    # the checkpoint holds every iteration that was logged: nothing done is lost
    assert meta["iteration"] == len(read_metrics(run / "metrics.csv"))
    assert meta["iteration"] < 60
