"""`mcpo bench` code paths at tiny sizes, so the benchmark does not rot. No timing is asserted:
the numbers of a run this small mean nothing; only that every system ran and was reported."""

import json
import math

import pytest

import mcpo.bench
from mcpo.cli import main

TINY = ["--env-ids", "Pendulum-v1", "--num-steps", "64", "--num-minibatches", "2",
        "--update-epochs", "1", "--rounds", "2", "--iterations", "1", "--sb3-iterations", "1"]


def test_bench_runs_every_system_and_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--quick", *TINY, "--memory-size", "2",
                 "--systems", "env", "rollout", "ppo", "mcpo", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    for title in ("Steps per second, steady state", "Ratios", "Where the time goes"):
        assert title in text
    for label in ("env only", "rollout only", "PPO (ours)", "MCPO (ours, N=2)"):
        assert label in text
    data = json.loads(out.read_text())
    assert data["complete"] is True
    assert data["settings"]["num_steps"] == 64 and data["settings"]["memory_size"] == 2
    systems = {"env", "rollout", "ppo", "mcpo"}
    assert {b["system"] for b in data["builds"]} == systems  # setup + first iteration
    assert sorted((x["system"], x["round"]) for x in data["samples"]) == sorted(
        (name, r) for name in systems for r in (0, 1))
    for x in data["samples"]:
        assert len(x["seconds"]) == 1
        assert x["sps"] > 0 and math.isfinite(x["sps"])
    for x in data["samples"]:  # ours: the trainer's own rollout/update split
        if x["system"] in ("ppo", "mcpo"):
            assert x["rollout"][0] > 0 and x["update"][0] > 0
            assert x["rollout"][0] + x["update"][0] <= x["seconds"][0]
    assert data["summary"]["ratios"]["ppo/env|Pendulum-v1"]["n"] == 2


def test_bench_measures_ours_on_the_envpool_backend(tmp_path, capsys):
    pytest.importorskip("envpool")
    out = tmp_path / "bench.json"
    assert main(["bench", *TINY, "--systems", "env", "ppo", "--backend", "envpool",
                 "--json", str(out)]) == 0
    assert "ours on the envpool backend" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["settings"]["backend"] == "envpool"
    assert {x["system"] for x in data["samples"]} == {"env", "ppo"}
    # an id envpool lacks is a clear error before anything runs
    assert main(["bench", *TINY[2:], "--env-ids", "MiniGrid-MultiRoom-N4-S5-v1",
                 "--systems", "env", "--backend", "envpool"]) == 2
    assert "--backend envpool has no environment" in capsys.readouterr().err


def test_missing_sb3_is_a_note_not_a_failure(monkeypatch, capsys):
    monkeypatch.setattr(mcpo.bench.runner, "sb3_unavailable",
                        lambda: "stable-baselines3 is not installed (test)")
    assert main(["bench", *TINY, "--systems", "env", "sb3-ppo"]) == 0
    text = capsys.readouterr().out
    assert "sb3-ppo skipped: stable-baselines3 is not installed (test)" in text
    assert "Targets" not in text  # no SB3 numbers, no verdict


def test_sb3_ppo_runs_when_installed(capsys):
    pytest.importorskip("stable_baselines3")
    assert main(["bench", *TINY, "--systems", "ppo", "sb3-ppo"]) == 0
    text = capsys.readouterr().out
    assert "SB3 PPO" in text and "PPO (ours) >= 8x SB3 PPO" in text


@pytest.mark.parametrize("argv, message", [
    (["--iterations", "0"], "--iterations must be >= 1"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--num-steps", "64", "--num-minibatches", "3"], "does not split into 3"),
    (["--env-ids", "Pendulm-v1"], "Did you mean 'Pendulum-v1'"),
    (["--memory-size", "0"], "--memory-size must be >= 1"),
])
def test_bad_input_exits_2_before_any_work(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(mcpo.bench.runner, "BUILD", {})  # building any system would raise KeyError
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err
