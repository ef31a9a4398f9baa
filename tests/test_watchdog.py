"""The hang watchdog (mcpo.watchdog): an idle process is stopped with a clear message and
EXIT_HUNG; a busy one, or one that was paused by SIGSTOP, is left alone."""

import os
import signal
import subprocess
import sys
import time

import pytest

from mcpo.types import ConfigError
from mcpo.watchdog import (ENV_LOG, ENV_RETRIES, ENV_SECONDS, EXIT_HUNG, hang_retries,
                           hang_seconds)

# A child that enters the watchdog (limit 1 s, sampled every 0.1 s), then idles or spins.
CHILD = """
import sys, time
from mcpo.watchdog import HangWatchdog
mode, seconds = sys.argv[1], float(sys.argv[2])
with HangWatchdog(1.0, "HUNG: the message", interval=0.1):
    t = time.monotonic()
    if mode == "idle":
        time.sleep(seconds)           # a deadlock: no CPU used
    else:
        while time.monotonic() - t < seconds:
            pass                      # a long computation
print("finished", flush=True)
"""


def staged(**settings) -> dict:
    """The environment of a child that hangs on purpose: kept out of the suite's hang log
    (tests/conftest.py), which is for real hangs (such as one in this process's resumes)."""
    env = {k: v for k, v in os.environ.items() if k != ENV_LOG}
    env.update(settings)
    return env


def _child(mode: str, seconds: float, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=staged(**(env or {})))


def test_an_idle_process_is_stopped_with_the_message_and_exit_hung():
    t = time.monotonic()
    p = _child("idle", 30)
    out, err = p.communicate(timeout=25)
    assert p.returncode == EXIT_HUNG
    assert "HUNG: the message" in err and "finished" not in out
    assert time.monotonic() - t < 20  # well before the 30 s sleep would have ended


def test_a_hang_is_also_recorded_with_every_threads_stack_in_the_hang_log(tmp_path):
    """$MCPO_HANG_LOG (set by the test suite and CI, where stderr can be lost) gets the
    message and the Python stack of each thread, the stuck one's line included; an
    unwritable log path does not keep the process from exiting with the message."""
    log = tmp_path / "hangs.log"
    for _ in range(2):  # appended
        p = _child("idle", 30, {"MCPO_HANG_LOG": str(log)})
        _, err = p.communicate(timeout=25)
        assert p.returncode == EXIT_HUNG and "HUNG: the message" in err
    text = log.read_text()
    assert text.count("HUNG: the message") == 2 and text.count("==== ") == 2
    # the main thread, stuck in the child's sleep (line 8 of its code), and the watchdog's
    assert 'File "<string>", line 8 in <module>' in text, text
    assert "_fire" in text and "_watch" in text
    p = _child("idle", 30, {"MCPO_HANG_LOG": str(tmp_path)})  # a directory: cannot append
    _, err = p.communicate(timeout=25)
    assert p.returncode == EXIT_HUNG and "HUNG: the message" in err


def test_a_busy_process_is_not_stopped():
    p = _child("busy", 3)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "finished" in out and "HUNG" not in err


def test_a_process_paused_by_sigstop_is_not_taken_for_a_hung_one():
    p = _child("busy", 4)
    time.sleep(1.0)
    os.kill(p.pid, signal.SIGSTOP)   # Ctrl-Z: stopped for longer than the limit
    time.sleep(2.5)
    os.kill(p.pid, signal.SIGCONT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "finished" in out


def test_the_limit_comes_from_the_environment_and_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv(ENV_SECONDS, "0")
    assert hang_seconds() == 0
    monkeypatch.setenv(ENV_SECONDS, "12.5")
    assert hang_seconds() == 12.5
    monkeypatch.setenv(ENV_SECONDS, "soon")
    with pytest.raises(ConfigError, match=ENV_SECONDS):
        hang_seconds()
    monkeypatch.delenv(ENV_RETRIES, raising=False)
    assert hang_retries() == 2
    monkeypatch.setenv(ENV_RETRIES, "0")
    assert hang_retries() == 0
    monkeypatch.setenv(ENV_RETRIES, "twice")
    with pytest.raises(ConfigError, match=ENV_RETRIES):
        hang_retries()


# A vmapped gymnax group whose host stalls after its 2nd iteration (a stand-in for XLA's
# deadlock, which cannot be provoked on demand): the watchdog stops it, the message says how to
# go on, and the group then resumes from its checkpoints and finishes.
GROUP = """
import sys, time
import mcpo
from mcpo.jaxenv.runner import train_group

class Stall(mcpo.Callback):
    def on_iteration(self, trainer, row):
        if trainer.iteration == 2:
            time.sleep(120)

cfgs = [mcpo.make_config("ppo", "Pendulum-v1", backend="gymnax", seed=s, num_envs=2,
                         num_steps=32, num_minibatches=2, update_epochs=1,
                         total_timesteps=64 * 4, checkpoint_every=1, eval_episodes=0,
                         progress=False, run_dir=f"{sys.argv[1]}/s{s}") for s in (1, 2)]
train_group(cfgs, callbacks=[Stall()])
"""


def test_a_stalled_group_is_stopped_and_resumes(tmp_path):
    pytest.importorskip("gymnax")
    from mcpo.cli import main
    from mcpo.logger import read_metrics

    env = staged(**{ENV_SECONDS: "1"})
    p = subprocess.run([sys.executable, "-c", GROUP, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == EXIT_HUNG, p.stderr[-2000:]
    assert "deadlocked" in p.stderr and f"--resume {tmp_path}/s1 {tmp_path}/s2" in p.stderr
    for s in (1, 2):  # the iterations before the stall are logged and checkpointed
        assert 1 <= len(read_metrics(tmp_path / f"s{s}" / "metrics.csv")) < 4
    assert main(["train", "--resume", str(tmp_path / "s1"), str(tmp_path / "s2")]) == 0
    for s in (1, 2):
        assert len(read_metrics(tmp_path / f"s{s}" / "metrics.csv")) == 4


# `mcpo train` on a vmapped group whose host stalls once, after its 2nd iteration (the stall is
# added to the CLI's callbacks in this child only; the process that replaces it after the hang
# is a plain `python -m mcpo`, so it does not stall).
CLI_GROUP = """
import sys, time
import mcpo
import mcpo.cli as cli

class Stall(mcpo.Callback):
    def on_iteration(self, trainer, row):
        if trainer.iteration == 2:
            time.sleep(120)

train = cli.train
cli.train = lambda cfg, **kw: train(cfg, **{**kw, "callbacks": [*kw["callbacks"], Stall()]})
own, sys.argv[1:] = sys.argv[1] == "own", sys.argv[2:]
sys.exit(cli.main() if own else cli.main(sys.argv[1:]))
"""


def _cli_group_argv(tmp_path, checkpoint_every: int) -> list[str]:
    """`mcpo train` of a 2-seed gymnax group of 4 tiny iterations in tmp_path/s1, s2."""
    return ["train", "--backend", "gymnax", "--algo", "ppo", "--env-id", "Pendulum-v1",
            "--seeds", "1,2", "--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2",
            "--update-epochs", "1", "--total-timesteps", "256", "--eval-episodes", "0",
            "--checkpoint-every", str(checkpoint_every), "--no-progress", "--no-tensorboard",
            "--run-dir", f"{tmp_path}/s{{seed}}"]


@pytest.mark.parametrize("checkpoint_every", [1, 100])
def test_mcpo_train_starts_a_hung_group_again_by_itself(tmp_path, checkpoint_every):
    """With checkpoints the group resumes from them; without (none written before the hang)
    the same command runs again with --overwrite. Either way the command ends with the whole
    run and exit code 0, in the same process (exec)."""
    pytest.importorskip("gymnax")
    from mcpo.logger import read_metrics

    argv = _cli_group_argv(tmp_path, checkpoint_every)
    env = staged(**{ENV_SECONDS: "1"})
    env.pop(ENV_RETRIES, None)
    p = subprocess.run([sys.executable, "-c", CLI_GROUP, "own", *argv], env=env,
                       capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "deadlocked" in p.stderr and "starting again in this process (1 more" in p.stderr
    again = p.stderr.split("starting again")[1]
    if checkpoint_every == 1:
        assert f"train --resume {tmp_path}/s1 {tmp_path}/s2 --no-progress" in again
    else:
        assert again.rstrip().splitlines()[0].endswith("--overwrite")
    for s in (1, 2):
        assert len(read_metrics(tmp_path / f"s{s}" / "metrics.csv")) == 4
        assert (tmp_path / f"s{s}" / "result.json").is_file()


def test_mcpo_train_stops_with_exit_hung_without_restarts_or_its_own_process(tmp_path):
    pytest.importorskip("gymnax")
    argv = _cli_group_argv(tmp_path, 1)
    for how, retries in (("own", "0"), ("list", "2")):
        # no restarts left; or main() called with a list, as from a caller's process (a test
        # suite, a notebook): that process is never replaced
        env = staged(**{ENV_SECONDS: "1", ENV_RETRIES: retries})
        p = subprocess.run([sys.executable, "-c", CLI_GROUP, how, *argv, "--overwrite"],
                           env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == EXIT_HUNG, p.stderr[-3000:]
        assert "deadlocked" in p.stderr and "starting again" not in p.stderr
        assert f"stopped with exit code {EXIT_HUNG}" in p.stderr
        assert f"--resume {tmp_path}/s1 {tmp_path}/s2" in p.stderr


# `mcpo train` whose group stalls while it is being built (its first JAX programs compile and
# run there) or while a resume loads its checkpoints: the watchdog covers that too.
CLI_BUILD = """
import sys, time
import mcpo.cli as cli
from mcpo.jaxenv import runner

where, sys.argv[1:] = sys.argv[1], sys.argv[2:]
original = getattr(runner.GroupRunner, where)
def stalled(self, *a, **kw):
    time.sleep(120)
    return original(self, *a, **kw)
setattr(runner.GroupRunner, where, stalled)
sys.exit(cli.main())
"""


@pytest.mark.parametrize("where", ["__init__", "load"])
def test_a_group_that_hangs_while_it_is_built_or_loaded_is_started_again(tmp_path, where):
    pytest.importorskip("gymnax")
    from mcpo.cli import main
    from mcpo.logger import read_metrics

    argv = _cli_group_argv(tmp_path, 1)
    if where == "load":  # a group of 2 iterations, then a resume to 4 that stalls in load
        assert main([*argv[:argv.index("--total-timesteps") + 1], "128",
                     *argv[argv.index("--total-timesteps") + 2:]]) == 0
        argv = ["train", "--resume", f"{tmp_path}/s1", f"{tmp_path}/s2",
                "--total-timesteps", "256"]
    env = staged(**{ENV_SECONDS: "1"})
    env.pop(ENV_RETRIES, None)
    p = subprocess.run([sys.executable, "-c", CLI_BUILD, where, *argv], env=env,
                       capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "deadlocked" in p.stderr and "starting again in this process" in p.stderr
    for s in (1, 2):
        assert len(read_metrics(tmp_path / f"s{s}" / "metrics.csv")) == 4
        assert (tmp_path / f"s{s}" / "result.json").is_file()
