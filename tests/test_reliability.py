"""Issue 8 §2, case by case: every bad input gets a one-paragraph error naming the input and
what is allowed, the documented exit code (2 bad input, 3 NaN/Inf, 4 busy, 5 OS fault, 128+N
signal N), and leaves the disk exactly as it was (names, sizes, SHA-256 of every file).

Cases run through the CLI (`mcpo.cli.main`, in-process) or the API; a real subprocess only
where the case needs one (signals, a file-size limit, dropped root privileges), marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mcpo
import toy_envs
from helpers import tree, wait_for
from mcpo.agent import EvalSettings, write_video
from mcpo.algos import ALGOS
from mcpo.bench.settings import Settings
from mcpo.checkpoint import load_checkpoint, save_checkpoint
from mcpo.cli import main
from mcpo.config import TrainConfig
from mcpo.logger import read_metrics
from mcpo.rundir import MARKER
from mcpo.types import bounds_text, check_fields, flag_name

toy_envs.register()
toy_envs.register_spaces()
TESTS = Path(__file__).parent
TINY = ["--env-id", "Pendulum-v1", "--num-envs", "2", "--num-steps", "64",
        "--num-minibatches", "2", "--update-epochs", "2", "--no-progress",
        "--eval-episodes", "1"]
TEMP_FILE = re.compile(r"^\..+\.tmp-\d+")  # what an interrupted atomic write leaves


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One finished PPO run (4 iterations of 128 steps, snapshots at 256 and 512)."""
    d = tmp_path_factory.mktemp("reliability") / "run"
    assert main(["train", "--algo", "ppo", "--run-dir", str(d), "--total-timesteps", "512",
                 "--snapshots", "2", *TINY]) == 0
    return d


def copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def refused(args: list[str], capsys, root: Path, code: int = 2) -> str:
    """Run the CLI; assert the exit code, one paragraph on stderr, no traceback, and `root`
    unchanged. Returns stderr."""
    before = tree(root)
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mcpo"), err
    assert "Traceback" not in err
    assert tree(root) == before
    return err


# ----------------------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,message", [
    ("1e11", "needs 3.12e+09 optimizer steps"),  # the OverflowError after the run dir, once
    ("1e30", "--total-timesteps must be >= 1 and <= 1000000000000; got 1e+30"),
])
def test_total_timesteps_beyond_what_a_run_can_count(tmp_path, capsys, value, message):
    err = refused(["train", "--run-dir", str(tmp_path / "r"), "--total-timesteps", value,
                   *TINY], capsys, tmp_path)
    assert message in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", [str(2**63), str(2**32), "-1", "1e19"])
def test_seed_outside_a_uint32(tmp_path, capsys, value):
    err = refused(["train", "--run-dir", str(tmp_path / "r"), "--seed", value, *TINY],
                  capsys, tmp_path)
    assert "--seed must be >= 0 and <= 4294967295; got " in err


def numeric_fields():
    """(owner, flag-owning algo, field) for every numeric setting a user can give."""
    out = [("TrainConfig", "ppo", f) for f in dataclasses.fields(TrainConfig)]
    for name, spec in ALGOS.items():
        out += [(spec.config_cls.__name__, name, f) for f in dataclasses.fields(spec.config_cls)]
    out += [("EvalSettings", None, f) for f in dataclasses.fields(EvalSettings)]
    out += [("Settings", None, f) for f in dataclasses.fields(Settings)]
    return [o for o in out if value_type(o[2]) in ("int", "float")]


def value_type(f) -> str:
    """A field's type when given: `int | None` (None: not given, e.g. a bench size) is int."""
    return f.type.removesuffix(" | None")


@pytest.mark.parametrize("owner,algo,f", numeric_fields(),
                         ids=lambda x: x.name if isinstance(x, dataclasses.Field) else str(x))
def test_every_numeric_setting_has_both_bounds(owner, algo, f):
    """A new numeric field without `param(low=..., high=...)` fails here."""
    assert f.metadata.get("low") is not None and f.metadata.get("high") is not None, \
        f"{owner}.{f.name} needs param(..., low=..., high=...)"


def beyond(f) -> list[tuple[str, object]]:
    """(which bound, the value at it or just past it) pairs: values a check must refuse."""
    m, out = f.metadata, []
    for side, sign in (("low", -1), ("high", 1)):
        b = m[side]
        if value_type(f) == "int":
            out.append((side, int(b) + sign))
        else:
            out.append((side, float(b) if m[f"{side}_open"]
                        else math.nextafter(float(b), sign * math.inf)))
    return out


def at(f) -> list[object]:
    """Values at (or, for an open bound, just inside) each bound: accepted."""
    m, out = f.metadata, []
    for side, sign in (("low", 1), ("high", -1)):
        b = m[side]
        if value_type(f) == "int":
            out.append(int(b))
        else:
            out.append(math.nextafter(float(b), sign * math.inf) if m[f"{side}_open"]
                       else float(b))
    return out


def owner_instance(owner: str, algo: str | None, **values):
    if owner == "TrainConfig":
        return TrainConfig(algo="ppo", **values)
    if owner == "EvalSettings":
        return EvalSettings(**values)
    if owner == "Settings":
        return Settings(**values)
    return ALGOS[algo].config_cls(**values)


CLI_FIELDS = [(o, a, f) for o, a, f in numeric_fields() if f.metadata.get("cli", True)]


@pytest.mark.parametrize("owner,algo,f", CLI_FIELDS,
                         ids=lambda x: x.name if isinstance(x, dataclasses.Field) else str(x))
def test_each_numeric_flag_at_and_just_beyond_its_bounds(tmp_path, capsys, run, owner, algo,
                                                        f):
    flag = flag_name(f.name)
    for v in at(f):  # accepted by the field's own check
        check_fields(owner_instance(owner, algo, **{f.name: v}))
    for side, v in beyond(f):
        text = repr(v) if isinstance(v, float) else str(v)
        if owner == "EvalSettings":
            args = ["eval", str(run), flag, text]
        elif owner == "Settings":
            args = ["bench", "--env-ids", "Pendulum-v1", flag, text]
        else:
            args = ["train", "--algo", algo, "--run-dir", str(tmp_path / "r"), flag, text]
        root = run if owner == "EvalSettings" else tmp_path
        err = refused(args, capsys, root)
        assert f"{flag} must be {bounds_text(f.metadata)}; got " in err, (side, err)
        assert not (tmp_path / "r").exists()


NOT_NUMBERS = [
    ("--seed", "nan", "argument --seed: expected an integer, got 'nan'"),
    ("--seed", "inf", "argument --seed: expected an integer, got 'inf'"),
    ("--seed", "abc", "argument --seed: expected an integer, got 'abc'"),
    ("--seed", "1.5", "argument --seed: expected an integer, got '1.5' (not a whole number)"),
    ("--seed", "1e50", "argument --seed: '1e50' is far too large"),
]
NOT_FLOATS = [
    ("--learning-rate", "nan", "argument --learning-rate: expected a finite number, got 'nan'"),
    ("--learning-rate", "-inf", "expected a finite number, got '-inf'"),
    ("--learning-rate", "1e400", "expected a finite number, got '1e400'"),
    ("--learning-rate", "abc", "argument --learning-rate: expected a number, got 'abc'"),
]


@pytest.mark.parametrize("command,flag,value,message",
                         [(c, *x) for c in ("train", "eval", "bench") for x in NOT_NUMBERS]
                         + [("train", *x) for x in NOT_FLOATS])
def test_nan_inf_and_text_as_numbers(tmp_path, capsys, run, command, flag, value, message):
    args = {"train": ["train", "--run-dir", str(tmp_path / "r")], "eval": ["eval", str(run)],
            "bench": ["bench"]}[command]
    before = tree(run), tree(tmp_path)
    with pytest.raises(SystemExit) as e:
        main([*args, flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and f"See `mcpo {command} --help`" in err
    assert err.count("\n") == 1  # one line, not argparse's whole usage
    assert (tree(run), tree(tmp_path)) == before


def test_bench_rounds_times_iterations_beyond_a_run(tmp_path, capsys):
    err = refused(["bench", "--env-ids", "Pendulum-v1", "--rounds", "10000", "--iterations",
                   "10000"], capsys, tmp_path)
    assert "--rounds 10000 x --iterations 10000 make training runs of 100,000,001" in err


def test_hidden_sizes_bounds(tmp_path, capsys):
    for sizes in (["0"], ["65537"], ["8"] * 17):
        err = refused(["train", "--run-dir", str(tmp_path / "r"), "--hidden-sizes", *sizes],
                      capsys, tmp_path)
        assert "--hidden-sizes must be 1 to 16 integers, each from 1 to 65536" in err


# ----------------------------------------------------------------------------------------------
# Action and observation spaces
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", list(toy_envs.SPACES))
def test_unsupported_spaces_are_named_with_what_is_supported(tmp_path, capsys, env_id):
    obs, act = toy_envs.SPACES[env_id]
    err = refused(["train", "--algo", "ppo", "--env-id", env_id, "--run-dir",
                   str(tmp_path / "r")], capsys, tmp_path)
    if "/Obs" in env_id:
        assert f"observation space {obs} is not supported" in err and "Box" in err
    else:
        assert f"action space {act} is not supported. Supported:" in err
        assert "actions: Box of shape (n,)" in err
        assert "Discrete(n) starting at 0" in err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------------------------
# Paths and OS faults
# ----------------------------------------------------------------------------------------------
def test_a_path_component_that_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    err = refused(["train", "--run-dir", str(tmp_path / "afile" / "run"), *TINY], capsys,
                  tmp_path)
    assert f"{tmp_path / 'afile'} is a file, not a directory" in err


def test_a_symlinked_run_dir_is_refused_for_train_overwrite_and_resume(tmp_path, capsys, run):
    real = copy(run, tmp_path, "real")
    (tmp_path / "link").symlink_to(real)
    link = str(tmp_path / "link")
    for args in (["train", "--run-dir", link, *TINY], ["train", "--run-dir", link,
                                                       "--overwrite", *TINY],
                 ["train", "--resume", link, "--total-timesteps", "1024"]):
        assert "symbolic link" in refused(args, capsys, tmp_path)


# Runs the rest of its argv as a Python command line, after setting what the child inherits
# across exec: a file-size limit with SIGXFSZ ignored (a write past it fails with EFBIG, as on a
# full disk), and/or root's permission-bypassing capabilities (CAP_DAC_OVERRIDE,
# CAP_DAC_READ_SEARCH, CAP_FOWNER) dropped from the bounding set, so that a root process obeys
# permission bits like any user. (Done by exec'ing, not in preexec_fn: forking a process that
# runs JAX's threads and running Python in the child can deadlock.)
LAUNCHER = r"""
import ctypes, os, resource, signal, sys
limit, drop = int(sys.argv[1]), sys.argv[2] == "1"
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if drop:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit(f"cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
"""


def launch(*argv, limit: int = 0, drop_root_powers: bool = False) -> list[str]:
    return [sys.executable, "-c", LAUNCHER, str(limit), "1" if drop_root_powers else "0",
            *map(str, argv)]


NOT_WRITABLE_SCRIPT = r"""
import contextlib, io, json, os, sys
sys.path.insert(0, sys.argv[1])
import mcpo
from mcpo.cli import main
from mcpo.types import MCPOError
base = sys.argv[2]
out = {}

def cli(name, args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        out[name] = (main(args), err.getvalue())

cli("new_run", ["train", "--run-dir", f"{base}/ro/new", "--algo", "ppo"])
cli("resume_dir", ["train", "--resume", f"{base}/ro_run", "--total-timesteps", "1024"])
cli("resume_ckpt", ["train", "--resume", f"{base}/ro_ckpt", "--total-timesteps", "1024"])
cli("video", ["eval", f"{base}/ro_run", "--episodes", "1000000", "--video",
              f"{base}/ro/ep.gif"])

class LoseWritePermission(mcpo.Callback):
    def on_iteration(self, trainer, row):
        if row["iteration"] == 2:
            os.chmod(trainer.ckpt_dir, 0o555)

cfg = mcpo.make_config("ppo", "Pendulum-v1", run_dir=f"{base}/midrun", num_envs=2,
                       num_steps=64, num_minibatches=2, update_epochs=2, progress=False,
                       eval_episodes=0, total_timesteps=640, checkpoint_every=1, snapshots=0)
try:
    mcpo.train(cfg, callbacks=[LoseWritePermission()])
    out["midrun"] = (0, "")
except MCPOError as e:
    out["midrun"] = (e.exit_code, str(e))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_directory_that_is_not_writable(tmp_path, run):
    """Root ignores permission bits, so as root the program runs with those privileges
    dropped (it then obeys the bits like any user); as another user, as it is."""
    root = os.geteuid() == 0
    if root:
        p = subprocess.run(launch("-c", "0", drop_root_powers=True), capture_output=True,
                           text=True)
        if p.returncode != 0:
            pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE ({p.stderr.strip()}"
                        f"): permission bits cannot be tested")
    (tmp_path / "ro").mkdir()
    ro_run, ro_ckpt = copy(run, tmp_path, "ro_run"), copy(run, tmp_path, "ro_ckpt")
    for d in (tmp_path / "ro", ro_run):
        d.chmod(0o555)
    (ro_ckpt / "checkpoints").chmod(0o555)
    before = tree(tmp_path)
    try:
        p = subprocess.run(launch("-c", NOT_WRITABLE_SCRIPT, TESTS, tmp_path,
                                  drop_root_powers=root),
                           capture_output=True, text=True, timeout=300)
        after = tree(tmp_path)
    finally:
        for d in (tmp_path / "ro", ro_run, ro_ckpt / "checkpoints",
                  tmp_path / "midrun" / "checkpoints"):
            if d.exists():
                d.chmod(0o755)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["new_run"] == [2, f"mcpo: error: Run directory {tmp_path}/ro/new: "
                                 f"{tmp_path}/ro is not writable by this user.\n"]
    assert out["resume_dir"][0] == 2 and f"{ro_run} is not writable" in out["resume_dir"][1]
    assert out["resume_ckpt"][0] == 2
    assert f"{ro_ckpt}/checkpoints is not writable" in out["resume_ckpt"][1]
    # checked before a million episodes: this returns at once
    assert out["video"] == [2, f"mcpo: error: --video {tmp_path}/ro/ep.gif: {tmp_path}/ro is "
                               f"not writable by this user.\n"]
    assert "Traceback" not in p.stderr
    for name in ("ro", "ro_run", "ro_ckpt"):  # nothing written or changed
        assert {k: v for k, v in after.items() if k.startswith(name)} == \
            {k: v for k, v in before.items() if k.startswith(name)}
    # permission lost mid-run: exit 5, the previous checkpoint and every row intact
    code, msg = out["midrun"]
    assert code == 5, msg
    assert "checkpoints/latest.ckpt: Permission denied (the previous version is intact)" in msg
    assert "The run stopped in iteration 2; its last good checkpoint" in msg
    assert "latest.ckpt (iteration 1), is intact; `mcpo train --resume" in msg
    midrun = tmp_path / "midrun"
    _, meta = load_checkpoint(midrun / "checkpoints" / "latest.ckpt")
    assert meta["iteration"] == 1
    assert [r["iteration"] for r in read_metrics(midrun / "metrics.csv")] == [1, 2]
    assert not [p for p in tree(midrun) if TEMP_FILE.match(Path(p).name)]


NO_CACHE = {"MCPO_COMPILE_CACHE": "0"}  # XLA's cache writes would meet the file-size limit


def cli_process(*args, limit: int = 0, timeout=300, background=False, env=None, **popen):
    """`mcpo ...` in a fresh interpreter that knows the toy envs (under a file-size limit)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import toy_envs; "
            "toy_envs.register(); toy_envs.register_spaces(); from mcpo.cli import main; "
            "sys.exit(main(sys.argv[2:]))")
    cmd = launch("-c", code, TESTS, *args, limit=limit)
    env = {**os.environ, **(env or {})}
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, **popen)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          **popen)


def whole_rows(path: Path) -> list[int]:
    """The iterations of metrics.csv, checking every line is a whole row."""
    lines = path.read_bytes().split(b"\r\n")
    assert lines[-1] == b"", "the file ends in the middle of a row"
    header = lines[0].split(b",")
    assert all(len(ln.split(b",")) == len(header) for ln in lines[1:-1])
    return [int(r["iteration"]) for r in read_metrics(path)]


@pytest.mark.slow
def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, run):
    r = copy(run, tmp_path)
    latest = r / "checkpoints" / "latest.ckpt"
    before = tree(r / "checkpoints")
    limit = latest.stat().st_size // 2  # the next checkpoint cannot be written
    p = cli_process("train", "--resume", r, "--total-timesteps", "1024", limit=limit,
                    env=NO_CACHE)
    assert p.returncode == 5, p.stderr
    err = p.stderr.strip()
    assert err.startswith(f"mcpo: error: Could not write {r}/checkpoints/")
    assert ".ckpt: File too large" in err
    assert "The run stopped in iteration 8" in err and "mcpo train --resume" in err
    assert "Traceback" not in p.stderr and err.count("\n") == 0
    assert tree(r / "checkpoints") == before  # the previous checkpoint, byte for byte
    assert whole_rows(r / "metrics.csv") == list(range(1, 9))  # every row written so far
    assert not [n for n in tree(r) if TEMP_FILE.match(Path(n).name)]
    # space freed: the resume continues from the intact checkpoint
    assert cli_process("train", "--resume", r, "--no-progress").returncode == 0
    assert whole_rows(r / "metrics.csv") == list(range(1, 9))
    assert load_checkpoint(latest)[1]["global_step"] == 1024


@pytest.mark.slow
@pytest.mark.parametrize("what", ["metrics.csv", "tb/events"])
def test_disk_full_while_writing_metrics_keeps_the_rows_written(tmp_path, what):
    """Small networks (a ~4 KB checkpoint) so that the metrics file outgrows the limit
    first."""
    r = tmp_path / "r"
    limit = 4500 if what == "metrics.csv" else 6000
    p = cli_process("train", "--algo", "ppo", "--run-dir", r, "--env-id", "Pendulum-v1",
                    "--num-envs", "1", "--num-steps", "32", "--num-minibatches", "1",
                    "--update-epochs", "1", "--hidden-sizes", "4", "--total-timesteps", "1280",
                    "--checkpoint-every", "5", "--snapshots", "0", "--eval-episodes", "0",
                    "--no-progress", *(["--no-tensorboard"] if what == "metrics.csv" else []),
                    limit=limit, env=NO_CACHE)
    assert p.returncode == 5, p.stderr
    err = p.stderr.strip()
    assert f"mcpo: error: Could not write {r}/{what}" in err and "File too large" in err
    assert "written before are intact" in err and "Traceback" not in p.stderr
    _, meta = load_checkpoint(r / "checkpoints" / "latest.ckpt")
    rows = whole_rows(r / "metrics.csv")
    assert rows == list(range(1, len(rows) + 1)) and len(rows) > 5
    done = len(rows) - (what != "metrics.csv")  # (a TB failure: the CSV row was written)
    assert meta["iteration"] == done // 5 * 5  # the last checkpoint (every 5 iterations)
    assert f"The run stopped in iteration {done + 1}; its last good checkpoint, " \
           f"{r}/checkpoints/latest.ckpt (iteration {meta['iteration']}), is intact" in err
    assert cli_process("train", "--resume", r).returncode == 0  # and it resumes
    assert whole_rows(r / "metrics.csv") == list(range(1, 41))


def test_video_path_is_checked_before_the_episodes(tmp_path, capsys, run):
    (tmp_path / "afile").write_text("x")
    cases = {str(tmp_path / "nodir" / "ep.gif"): f"the directory {tmp_path / 'nodir'} does "
                                                  f"not exist",
             str(tmp_path): "is a directory; give a file path",
             str(tmp_path / "afile" / "ep.gif"): "is a file, not a directory",
             str(tmp_path / "ep.avi"): "must end in .gif"}
    for video, message in cases.items():  # a million episodes would not end: checked first
        err = refused(["eval", str(run), "--episodes", "1000000", "--video", video], capsys,
                      tmp_path)
        assert f"--video {video}" in err and message in err
    # written through a temp file beside it, renamed when complete
    write_video(str(tmp_path / "ep.gif"), [np.zeros((8, 8, 3), np.uint8)] * 2, fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ep.gif"]


# ----------------------------------------------------------------------------------------------
# Hand-edited or corrupted run files
# ----------------------------------------------------------------------------------------------
def edit_json(name, fn):
    def apply(d: Path):
        obj = json.loads((d / name).read_text())
        fn(obj)
        (d / name).write_text(json.dumps(obj))
    return apply


CONFIG_DAMAGE = {
    "bad JSON": (lambda d: (d / "config.json").write_text("{not json"), "is not valid JSON"),
    "not an object": (lambda d: (d / "config.json").write_text("[1, 2]"),
                      "a config must be a JSON object; got list"),
    "binary": (lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00"),
               "is not valid JSON"),
    "wrong type": (edit_json("config.json", lambda c: c.update(learning_rate="fast")),
                   "--learning-rate must be a number; got 'fast'"),
    "float for int": (edit_json("config.json", lambda c: c.update(num_steps=64.5)),
                      "--num-steps must be an integer; got 64.5"),
    "null": (edit_json("config.json", lambda c: c.update(seed=None)),
             "--seed must be an integer; got None"),
    "out of bounds": (edit_json("config.json", lambda c: c.update(seed=2**70)),
                      "--seed must be >= 0 and <= 4294967295"),
    "bad list": (edit_json("config.json", lambda c: c.update(hidden_sizes=[64, "a"])),
                 "--hidden-sizes must be a list of integers"),
    "bad overrides": (edit_json("config.json", lambda c: c.update(overrides=5)),
                      "--overrides must be a list of strings; got 5"),
    "unknown key": (edit_json("config.json", lambda c: c.update(foo=1)),
                    "Unknown TrainConfig field(s): foo"),
    "missing key": (edit_json("config.json", lambda c: c.pop("gamma")),
                    "TrainConfig lacks field(s): gamma"),
    "wrong algo_config": (edit_json("config.json", lambda c: c.update(
        algo_config={"memory_size": 3})), "Unknown PPOConfig field(s): memory_size"),
    "algo_config not an object": (edit_json("config.json", lambda c: c.update(
        algo_config=[1])), "'algo_config' must be an object"),
    "unknown algo": (edit_json("config.json", lambda c: c.update(algo="zzz")),
                     "'algo' is 'zzz', not one of"),
    "run.json garbage": (lambda d: (d / MARKER).write_text("garbage"),
                         "run.json is not a valid run marker"),
    "run.json history": (edit_json(MARKER, lambda m: m.update(history=[5])),
                         "run.json: history entry 0 is 5, not an event object"),
    "run.json budget": (edit_json(MARKER, lambda m: m.update(
        history=[{"event": "budget", "total_timesteps": "x"}])),
        "a 'budget' event has total_timesteps 'x'"),
}


def _rows(d):
    return (d / "metrics.csv").read_text().splitlines(True)


METRICS_DAMAGE = {
    "empty": (lambda d: (d / "metrics.csv").write_text(""), "holds 0 complete rows, but"),
    "header only": (lambda d: (d / "metrics.csv").write_text(_rows(d)[0]),
                    "holds 0 complete rows, but"),
    "truncated": (lambda d: (d / "metrics.csv").write_text("".join(_rows(d))[:-30]),
                  "holds 3 complete rows, but"),
    "garbage": (lambda d: (d / "metrics.csv").write_text("hello\nworld\n" * 5),
                "line 1 is not an mcpo metrics header"),
    "binary": (lambda d: (d / "metrics.csv").write_bytes(bytes(range(255, -1, -1)) * 10),
               "is not text"),
    "a garbled row": (lambda d: (d / "metrics.csv").write_text(
        "".join(_rows(d)).replace("\n2,256,", "\n2,2x6,")), "line 3 is not the metrics row"),
    "a missing row": (lambda d: (d / "metrics.csv").write_text(
        "".join(r for r in _rows(d) if not r.startswith("2,"))), "holds 3 complete rows"),
    "a directory": (lambda d: ((d / "metrics.csv").unlink(), (d / "metrics.csv").mkdir()),
                    "is not a file"),
}


@pytest.mark.parametrize("case", list(CONFIG_DAMAGE) + list(METRICS_DAMAGE))
def test_a_damaged_run_file_is_named_by_resume_eval_and_load(tmp_path, capsys, run, case):
    """config.json and run.json: by `train --resume`, `eval` and `mcpo.load`; metrics.csv
    (which only a resume reads) by `train --resume`."""
    d = copy(run, tmp_path)
    metrics = case in METRICS_DAMAGE
    damage, message = (METRICS_DAMAGE if metrics else CONFIG_DAMAGE)[case]
    damage(d)
    name = "metrics.csv" if metrics else MARKER if case.startswith("run.json") else "config.json"
    commands = [["train", "--resume", str(d), "--total-timesteps", "1024"]]
    for args in commands + ([] if metrics else [["eval", str(d)]]):
        err = refused(args, capsys, tmp_path)
        assert f"{d / name}" in err and message in err
    if metrics:
        assert "move it away to resume without its rows" in err
    else:
        with pytest.raises(mcpo.ConfigError, match=re.escape(message)):
            mcpo.load(d)


def test_a_missing_metrics_csv_is_said_and_the_run_continues(tmp_path, capsys, run):
    d = copy(run, tmp_path)
    (d / "metrics.csv").unlink()
    assert main(["train", "--resume", str(d), "--total-timesteps", "768"]) == 0
    assert "metrics.csv is missing, so the rows of the first 4 iterations are gone" in \
        capsys.readouterr().err
    assert whole_rows(d / "metrics.csv") == [5, 6]
    assert main(["train", "--resume", str(d), "--total-timesteps", "1024"]) == 0  # and again
    assert whole_rows(d / "metrics.csv") == [5, 6, 7, 8]


CKPT_DAMAGE = {
    "missing key": (lambda m: m.pop("csv_rows"), "lacks the metadata key 'csv_rows'"),
    "missing algo": (lambda m: m.pop("algo"), "lacks the metadata key 'algo'"),
    "wrong type": (lambda m: m.update(iteration="two"),
                   "metadata 'iteration' is 'two', not a non-negative integer"),
    "bool for int": (lambda m: m.update(episodes=True),
                     "metadata 'episodes' is True, not a non-negative integer"),
    "negative": (lambda m: m.update(global_step=-5),
                 "metadata 'global_step' is -5, not a non-negative integer"),
    "bad list": (lambda m: m.update(recent_returns=["x"]),
                 "metadata 'recent_returns' is ['x'], not a list of numbers"),
    "other algo": (lambda m: m.update(algo="mcpo"), "is for algo 'mcpo', the run's config"),
    "not an object": (None, "has no metadata object"),
}


@pytest.mark.parametrize("case", list(CKPT_DAMAGE))
def test_a_checkpoint_with_bad_metadata_is_named_by_resume_eval_and_load(tmp_path, capsys, run,
                                                                          case):
    d = copy(run, tmp_path)
    path = d / "checkpoints" / "latest.ckpt"
    arrays, meta = load_checkpoint(path)
    edit, message = CKPT_DAMAGE[case]
    if edit is None:
        meta = [1, 2]
    else:
        edit(meta)
    save_checkpoint(path, arrays, meta)  # a valid checksum: only the metadata is wrong
    for args in (["train", "--resume", str(d), "--total-timesteps", "1024"], ["eval", str(d)]):
        err = refused(args, capsys, tmp_path)
        assert f"{path}" in err and message in err
    with pytest.raises(mcpo.CheckpointError, match=re.escape(message)):
        mcpo.load(d)


def test_a_checkpoint_whose_step_disagrees_with_the_config(tmp_path, capsys, run):
    d = copy(run, tmp_path)
    path = d / "checkpoints" / "latest.ckpt"
    arrays, meta = load_checkpoint(path)
    meta["global_step"] = 500
    save_checkpoint(path, arrays, meta)
    err = refused(["train", "--resume", str(d), "--total-timesteps", "1024"], capsys, tmp_path)
    assert "global_step 500 is not iteration 4 x the batch of 128" in err


# ----------------------------------------------------------------------------------------------
# Budgets and missing checkpoints on resume
# ----------------------------------------------------------------------------------------------
def test_resume_with_a_smaller_budget_is_refused(tmp_path, capsys, run):
    d = copy(run, tmp_path)
    err = refused(["train", "--resume", str(d), "--total-timesteps", "256"], capsys, tmp_path)
    assert "--total-timesteps 256 is less than the 512 steps latest.ckpt has already trained"\
        in err and "give at least 512" in err


def test_resume_with_a_larger_budget_extends_and_records_it(tmp_path, capsys, run):
    d = copy(run, tmp_path)
    config = (d / "config.json").read_bytes()
    assert main(["train", "--resume", str(d), "--total-timesteps", "768"]) == 0
    assert "steps          768 in 6 iterations" in capsys.readouterr().out
    assert (d / "config.json").read_bytes() == config
    hist = json.loads((d / MARKER).read_text())["history"]
    assert [(h["event"], h["total_timesteps"], h["previous"]) for h in hist] == \
        [("budget", 768, 512)]
    assert whole_rows(d / "metrics.csv") == [1, 2, 3, 4, 5, 6]


def test_latest_missing_names_resume_from_and_never_a_deleting_command(tmp_path, capsys, run):
    d = copy(run, tmp_path)
    (d / "checkpoints" / "latest.ckpt").unlink()
    for args in (["train", "--resume", str(d)], ["eval", str(d)]):
        err = refused(args, capsys, tmp_path)
        assert f"mcpo train --resume {d} --resume-from step_000000000512.ckpt" in err
        assert "--overwrite" not in err and "delete" not in err.replace("nothing is deleted",
                                                                        "")


# ----------------------------------------------------------------------------------------------
# Ctrl-C (real processes)
# ----------------------------------------------------------------------------------------------
ASYNC = ["--algo", "ppo", "--env-id", "Pendulum-v1", "--vec-env", "async", "--num-envs", "2",
         "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "2",
         "--checkpoint-every", "1", "--eval-episodes", "0", "--no-progress",
         "--total-timesteps", "1e6"]


def interrupt(proc, group: bool):
    """Ctrl-C as a terminal sends it (to the whole process group), or to the process alone."""
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def rows_done(run: Path) -> int:
    try:
        return len(read_metrics(run / "metrics.csv"))
    except (OSError, KeyError, ValueError):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("group", [True, False], ids=["process-group", "process"])
def test_ctrl_c_with_async_envs_during_training(tmp_path, group):
    r = tmp_path / "r"
    proc = cli_process("train", "--run-dir", r, *ASYNC, background=True,
                       start_new_session=True)
    wait_for(lambda: rows_done(r) >= 2, proc)
    code, err = interrupt(proc, group)
    assert code == 130, err
    assert "Traceback" not in err and err.count("\n") == 1, err  # workers print nothing
    _, meta = load_checkpoint(r / "checkpoints" / "latest.ckpt")
    # (--checkpoint-every 1: the last completed iteration's checkpoint is already written)
    assert err == (f"mcpo: SIGINT received: the checkpoint at step {meta['global_step']} holds "
                   f"every completed iteration. Resume with: mcpo train --resume {r}\n")
    assert meta["iteration"] == len(read_metrics(r / "metrics.csv"))


def sigint_ignored(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(ln for ln in status.splitlines() if ln.startswith("SigIgn:")).split()[1], 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


def children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


@pytest.mark.slow
def test_ctrl_c_during_start_up_with_async_envs_writes_nothing(tmp_path):
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs /proc/<pid>/task/<pid>/children to see the workers start")
    r = tmp_path / "r"
    proc = cli_process("train", "--run-dir", r, *ASYNC, background=True,
                       start_new_session=True)
    # the env workers have been forked (while they are, this process ignores SIGINT, so that
    # they are born ignoring it), and the run directory is not made yet
    wait_for(lambda: children(proc.pid) and not sigint_ignored(proc.pid), proc)
    assert not r.exists()
    code, err = interrupt(proc, group=True)
    assert code == 130, err
    assert err == ("mcpo: SIGINT received during start-up, before the run directory was "
                   "created: nothing was written.\n")
    assert not r.exists()


SLOW_START = ["--algo", "ppo", "--num-steps", "16", "--num-minibatches", "1",
              "--total-timesteps", "64", "--no-progress", "--eval-episodes", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["mcpo_test/SlowStart-v0", "mcpo_test/SlowReset-v0"],
                         ids=["before-the-run-dir", "before-the-first-iteration"])
def test_ctrl_c_during_start_up(tmp_path, env_id):
    """Toy envs whose construction (before the run directory is made) or first reset (the
    trainer's first act after making it) takes a second, and say when it starts."""
    r, started = tmp_path / "r", tmp_path / "started"
    proc = cli_process("train", "--run-dir", r, "--env-id", env_id, *SLOW_START,
                       background=True, start_new_session=True,
                       env={"MCPO_TEST_STARTED": str(started)})
    wait_for(started.exists, proc)
    code, err = interrupt(proc, group=True)
    assert code == 130, err
    if env_id == "mcpo_test/SlowStart-v0":  # nothing written
        assert err == ("mcpo: SIGINT received during start-up, before the run directory was "
                       "created: nothing was written.\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["started"]
        return
    # a clean state: a step-0 checkpoint, from which the run resumes
    assert err == (f"mcpo: SIGINT received during start-up, before the first iteration "
                   f"(nothing was trained yet): checkpoint written at step 0. Resume with: "
                   f"mcpo train --resume {r}\n")
    assert load_checkpoint(r / "checkpoints" / "latest.ckpt")[1]["iteration"] == 0
    assert cli_process("train", "--resume", r).returncode == 0
    assert whole_rows(r / "metrics.csv") == [1, 2, 3, 4]


@pytest.mark.slow
def test_ctrl_c_while_a_resume_starts_changes_nothing(tmp_path):
    r, started = tmp_path / "r", tmp_path / "started"
    assert main(["train", "--run-dir", str(r), "--env-id", "mcpo_test/SlowStart-v0",
                 *SLOW_START]) == 0  # (no pause without $MCPO_TEST_STARTED)
    before = tree(r)
    proc = cli_process("train", "--resume", r, "--total-timesteps", "128", background=True,
                       start_new_session=True, env={"MCPO_TEST_STARTED": str(started)})
    wait_for(started.exists, proc)
    code, err = interrupt(proc, group=True)
    assert code == 130, err
    assert err == (f"mcpo: SIGINT received while resuming, before anything was written: {r} "
                   f"is unchanged.\n")
    assert tree(r) == before


@pytest.mark.slow
def test_ctrl_c_during_the_final_evaluation(tmp_path):
    r = tmp_path / "r"
    proc = cli_process("train", "--run-dir", r, "--algo", "ppo", *TINY[:-2],
                       "--total-timesteps", "256", "--eval-episodes", "1000000",
                       background=True, start_new_session=True)

    def trained():
        try:
            return load_checkpoint(r / "checkpoints" / "latest.ckpt")[1]["global_step"] == 256
        except mcpo.CheckpointError:
            return False

    wait_for(trained, proc)
    code, err = interrupt(proc, group=False)
    assert code == 130, err
    assert err == (f"mcpo: SIGINT received during the final evaluation (training is complete; "
                   f"resuming runs only the evaluation): checkpoint written at step 256. "
                   f"Resume with: mcpo train --resume {r}\n")
    assert not (r / "result.json").exists()


# ----------------------------------------------------------------------------------------------
# Agent.act
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("obs,message", [
    (np.zeros((3, 1)), "observation of shape (3, 1); this agent expects (3,)"),
    (0.5, "observation of a scalar; this agent expects (3,)"),
    (np.zeros(4), "observation of shape (4,); this agent expects (3,)"),
    (np.zeros((2, 2, 3)), "observation of shape (2, 2, 3)"),
    (np.zeros((0, 3)), "empty batch of shape (0, 3)"),
    (np.array(["a", "b", "c"]), "observation of dtype <U1"),
    (np.zeros(3, complex), "observation of dtype complex128"),
    (np.zeros(3, object), "observation of dtype object"),
    ({"a": 1}, "observation of dtype object (dict)"),
    ([[1.0, 2.0], [3.0]], "the observation is not an array"),
])
def test_agent_act_refuses_what_would_broadcast_or_fail_later(run, obs, message):
    agent = mcpo.load(run)
    with pytest.raises(mcpo.ConfigError, match=re.escape(message)) as e:
        agent.act(obs)
    assert "(N, 3) (a batch)" in str(e.value)


def test_agent_act_keeps_working_on_right_shapes(run):
    agent = mcpo.load(run)
    assert agent.act(np.zeros(3, np.float32)).shape == (1,)
    assert agent.act([0.1, 0.2, 0.3]).shape == (1,)
    assert agent.act(np.zeros(3, np.int64)).shape == (1,)
    batch = np.random.default_rng(0).standard_normal((5, 3))
    acts = agent.act(batch)
    assert acts.shape == (5, 1)
    np.testing.assert_allclose(acts[2], agent.act(batch[2]), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Small: the NaN-stop message, temp files, a finished run resumed again, eval, Ctrl-C messages
# ----------------------------------------------------------------------------------------------
NAN_RUN = dict(env_id="mcpo_test/NanReward-v0", num_envs=1, num_steps=64, num_minibatches=2,
               update_epochs=1, total_timesteps=640, progress=False, tensorboard=False,
               eval_episodes=0)  # NaN reward at env step 300: iteration 5


@pytest.mark.parametrize("kept", ["latest", "snapshot", "none"])
def test_the_nan_stop_names_the_checkpoint_really_kept(tmp_path, kept):
    r = tmp_path / "r"
    settings = {"latest": dict(checkpoint_every=1, snapshots=0),
                "snapshot": dict(checkpoint_every=3, snapshots=5),  # snapshot 4 > latest 3
                "none": dict(checkpoint_every=100, snapshots=0)}[kept]
    with pytest.raises(mcpo.NonFiniteError, match="rewards at iteration 5") as e:
        mcpo.train(mcpo.make_config("ppo", run_dir=str(r), **NAN_RUN, **settings))
    msg = str(e.value)
    ckpts = sorted(p.name for p in (r / "checkpoints").iterdir())
    if kept == "latest":
        assert f"{r}/checkpoints/latest.ckpt (iteration 4), is intact; `mcpo train --resume " \
               f"{r}` continues from it." in msg
        assert load_checkpoint(r / "checkpoints" / "latest.ckpt")[1]["iteration"] == 4
    elif kept == "snapshot":
        assert f"the snapshot {r}/checkpoints/step_000000000256.ckpt (iteration 4)" in msg
        assert f"--resume-from step_000000000256.ckpt` continues from it" in msg
        assert ckpts == ["latest.ckpt", "step_000000000128.ckpt", "step_000000000256.ckpt"]
        assert load_checkpoint(r / "checkpoints" / "latest.ckpt")[1]["iteration"] == 3
    else:
        assert msg.endswith("no checkpoint had been written yet, so there is nothing to "
                            "resume.")
        assert ckpts == []


def test_no_temp_file_is_left_by_a_finished_or_resumed_run(tmp_path, capsys, run):
    assert not [n for n in tree(run) if TEMP_FILE.match(Path(n).name)]
    d = copy(run, tmp_path)
    assert main(["train", "--resume", str(d), "--total-timesteps", "768"]) == 0
    names = tree(d)
    assert not [n for n in names if TEMP_FILE.match(Path(n).name)], names


def test_a_finished_run_resumed_again_reports_its_real_figures(tmp_path, capsys, run):
    d = copy(run, tmp_path)
    result = json.loads((d / "result.json").read_text())
    before = tree(d)
    assert main(["train", "--resume", str(d)]) == 0
    out = capsys.readouterr().out
    assert result["sps"] > 0
    assert (f"steps          512 in 4 iterations, {result['wall_time']:.1f} s, "
            f"{result['sps']:,.0f} steps/s") in out
    assert f"eval return    {result['eval_return_mean']:.2f}" in out
    assert tree(d) == before  # nothing to do, nothing written


def test_eval_of_a_missing_file_legacy_run_and_checkpoint(tmp_path, capsys, run):
    (tmp_path / "afile").write_text("x")
    assert "no such directory" in refused(["eval", str(tmp_path / "nope")], capsys, tmp_path)
    assert "it is a file" in refused(["eval", str(tmp_path / "afile")], capsys, tmp_path)
    assert "not an mcpo run directory (no run.json)" in refused(["eval", str(tmp_path)],
                                                               capsys, tmp_path)
    err = refused(["eval", str(run), "--checkpoint", "nope.ckpt"], capsys, run)
    assert "No checkpoint 'nope.ckpt'" in err and "step_000000000512.ckpt" in err
    legacy = copy(TESTS / "data" / "legacy_v1" / "ppo", tmp_path, "legacy")
    before = tree(legacy)
    assert main(["eval", str(legacy), "--episodes", "1"]) == 0  # read only
    assert tree(legacy) == before


@pytest.mark.parametrize("argv,where,message", [
    (["train"], "mcpo.cli.config_from_args", "interrupted before training started; nothing "
                                             "was written."),
    (["train", "--resume", "x"], "mcpo.cli.resume", "interrupted before the run was resumed; "
                                                    "nothing in it was changed."),
    (["eval", "x"], "mcpo.cli.load", "interrupted; nothing was written (the run directory is "
                                     "only read"),
    (["bench"], "mcpo.bench.run_from_args", "interrupted; nothing was written (the --json "
                                            "file is written only at the end)."),
])
def test_ctrl_c_outside_a_run_says_what_is_true_for_the_command(monkeypatch, capsys, argv,
                                                                where, message):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(where, interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("mcpo: ") and message in err and err.count("\n") == 1


COMPILE_SCRIPT = """
import jax, jax.numpy as jnp
from mcpo.trainer import enable_compile_cache
enable_compile_cache()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
x = jnp.ones((4, 4))
for _ in range(3):
    x = jnp.sin(x) @ x
print(float(x.sum()))
"""


def test_a_compile_cache_entry_cut_short_is_dropped_and_none_is_ever_left_cut_short(tmp_path):
    """JAX writes its cache entries in place and never replaces one: a run stopped while
    writing (a full disk here: a file-size limit) used to leave a truncated entry that every
    later run failed to read. Now an entry is whole or absent, and an unreadable one (as such
    a run left it) is dropped and written again."""
    import resource

    cache = tmp_path / "cache"
    env = {**os.environ, "MCPO_COMPILE_CACHE": str(cache)}

    def run(limit=None):
        pre = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))) if limit \
            else None
        p = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, text=True,
                           capture_output=True, preexec_fn=pre, timeout=300)
        assert p.returncode == 0, p.stderr
        return p.stdout, p.stderr

    out, err = run(limit=512)  # every entry is larger than 512 bytes: every write fails
    assert "Error writing persistent compilation cache entry" in err
    assert not any(cache.iterdir())  # nothing partial left behind
    assert run()[0] == out
    entries = sorted(cache.glob("*-cache"))
    assert entries and not [p for p in cache.iterdir() if p not in entries]
    sizes = {p: p.stat().st_size for p in entries}
    with open(entries[0], "r+b") as f:  # what an older run stopped mid-write left
        f.truncate(100)
    out2, err = run()
    assert out2 == out
    assert err.count("Error reading persistent compilation cache entry") == 1
    assert {p: p.stat().st_size for p in entries} == sizes  # written again, whole
    assert "Error reading" not in run()[1]
