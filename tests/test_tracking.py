"""Weights & Biases tracking (--track) in offline mode, without a network: one W&B run per
training run, its files in the run directory, every iteration's metrics logged, the same run
continued on resume, sweeps grouped by name."""

import struct

import pytest

from mcpo.experiments import parse_spec
from mcpo.experiments.sweep import job_of
from mcpo.experiments.worker import run_job
from mcpo.logger import read_metrics
from mcpo.rundir import WANDB_DIR
from mcpo.tracking import WandbCallback
from mcpo.trainer import resume

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2 as pb  # noqa: E402

SPEC = """\
name: tracked
flags: {total_timesteps: 768, num_steps: 256, num_minibatches: 4, update_epochs: 1,
        eval_episodes: 1, snapshots: 0, tensorboard: false}
envs: [CartPole-v1]
methods:
  PPO: {algo: ppo}
"""


def records(path):
    """The protobuf records of a W&B transaction log (.wandb: a LevelDB-style log of 32 KiB
    blocks, 7-byte record headers: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            out.append(buf + chunk)
        else:
            break
    recs = []
    for c in out:
        r = pb.Record()
        r.ParseFromString(c)
        recs.append(r)
    return recs


def history(recs):
    rows = []
    for r in recs:
        if r.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): i.value_json for i in r.history.item})
    return rows


def the_run(recs):
    return next(r.run for r in recs if r.WhichOneof("record_type") == "run")


@pytest.mark.slow
def test_offline_tracking_of_a_sweep_run_and_its_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec = parse_spec(SPEC, "tracked.yaml", tmp_path / "sweep")
    (run,) = spec.runs
    out = run_job(job_of(run, spec, {"project": "mcpo-test", "group": spec.name}))
    assert out["status"] == "done", out
    run_dir = tmp_path / "sweep" / run.name
    (log,) = (run_dir / WANDB_DIR).glob("offline-run-*/run-*.wandb")
    recs = records(log)
    info = the_run(recs)
    assert (info.run_group, info.display_name, info.project) == ("tracked", run.name,
                                                                 "mcpo-test")
    rows = read_metrics(run_dir / "metrics.csv")
    logged = history(recs)
    assert [int(h["global_step"]) for h in logged] == [int(r["global_step"]) for r in rows]
    assert [float(h["ep_return_mean"]) for h in logged] == pytest.approx(
        [r["ep_return_mean"] for r in rows])
    # resuming with a larger budget continues the same W&B run
    cb = WandbCallback(project="mcpo-test", group="tracked")
    res = resume(run_dir, 1280, callbacks=[cb])
    assert res.global_step == 1280
    ids = {the_run(records(f)).run_id for f in (run_dir / WANDB_DIR).glob("offline-run-*/*.wandb")}
    assert len(ids) == 1 and len(list((run_dir / WANDB_DIR).glob("offline-run-*"))) == 2
