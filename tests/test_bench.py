"""`mcpo bench` code paths at tiny sizes, so the benchmark does not rot. No timing is asserted:
the numbers of a run this small mean nothing; only that every system ran and was reported."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import toy_envs

import mcpo.bench
from mcpo.bench.results import BenchResult, Sample
from mcpo.bench.runner import probe_env, settings_from_args
from mcpo.bench.settings import TARGETS, Settings, targets_for
from mcpo.bench.systems import RolloutOnly
from mcpo.cli import build_parser, main
from mcpo.networks import MiniGridOneHot, NatureCNNActorCritic
from mcpo.presets import make_config

TINY = ["--env-ids", "Pendulum-v1", "--num-steps", "64", "--num-minibatches", "2",
        "--update-epochs", "1", "--rounds", "2", "--iterations", "1", "--sb3-iterations", "1"]
BREAKOUT, MINIGRID = "ALE/Breakout-v5", "MiniGrid-Unlock-v0"
# Atari and MiniGrid at a tiny T: one Atari CNN iteration of the preset's 1024 steps costs ~10 s
SMALL = ["--num-steps", "16", "--num-minibatches", "2"]
# What the bench sets in our runs' configs on top of `mcpo train`'s (Settings.train_config)
BENCH_OWN = {"total_timesteps", "seed", "run_dir", "backend", "snapshots", "eval_episodes",
             "progress", "overrides"}


def bench_settings(*argv: str) -> Settings:
    return settings_from_args(build_parser(["bench"]).parse_args(["bench", *argv]))


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in a report."""
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith("| ")]


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


@pytest.mark.parametrize("env_id, preset, sizes, network", [
    ("Pendulum-v1", "classic", (1, 2048, 10, 32), "mlp"),
    ("HalfCheetah-v5", "mujoco", (1, 2048, 10, 32), "mlp"),
    (BREAKOUT, "atari", (8, 128, 4, 4), "nature-cnn"),
    (MINIGRID, "minigrid", (16, 128, 4, 8), "minigrid"),
])
def test_each_env_runs_its_family_preset(env_id, preset, sizes, network):
    s = bench_settings("--env-ids", env_id)
    e = probe_env(s, env_id)
    assert (e.preset, e.network, e.flags) == (preset, network, ())
    assert (e.num_envs, e.num_steps, e.update_epochs, e.num_minibatches) == sizes
    for algo in ("ppo", "mcpo"):  # exactly `mcpo train --algo ALGO --env-id ENV`'s config...
        ours, train = s.train_config(algo, env_id), make_config(algo, env_id)
        for f in dataclasses.fields(train):
            if f.name not in BENCH_OWN | {"algo_config"}:
                assert getattr(ours, f.name) == getattr(train, f.name), f.name
        assert ours.algo_config == dataclasses.replace(train.algo_config, **(
            {"memory_size": s.memory_size} if algo == "mcpo" else {}))
        # ...but no evaluation, snapshots or progress, and a budget of the bench's iterations
        assert (ours.eval_episodes, ours.snapshots, ours.progress) == (0, 0, False)
        assert ours.total_timesteps == s.run_iterations * e.batch_size
    # the paper-literal MCPO beside the default: the same run but for the slot features,
    # which the Atari preset leaves off for both
    mcpo_, paper = s.train_config("mcpo", env_id), s.train_config("mcpo-paper", env_id)
    assert not paper.algo_config.attn_slot_features
    assert mcpo_.algo_config.attn_slot_features == (preset != "atari")
    assert paper.replace(algo_config=mcpo_.algo_config,
                         overrides=mcpo_.overrides) == mcpo_  # overrides: the flags given


def test_a_size_flag_overrides_every_env_preset():
    s = bench_settings("--env-ids", "Pendulum-v1", BREAKOUT, MINIGRID, *SMALL)
    got = {e: s.env_setting(e, "-") for e in s.env_ids}
    assert {e: (x.num_envs, x.num_steps, x.update_epochs, x.num_minibatches)
            for e, x in got.items()} == {"Pendulum-v1": (1, 16, 10, 2), BREAKOUT: (8, 16, 4, 2),
                                         MINIGRID: (16, 16, 4, 2)}
    assert all(x.flags == ("num_steps", "num_minibatches") for x in got.values())
    assert s.train_config("mcpo", BREAKOUT).batch_size == 8 * 16


def test_rollout_only_builds_the_preset_network(tmp_path):
    s = Settings(num_steps=4)
    grid = RolloutOnly(s, MINIGRID, tmp_path)
    try:
        policy = grid.collector.policy
        assert isinstance(policy.encoder, MiniGridOneHot) and policy.obs_dim == 984
        assert policy.hidden_sizes == (64, 64) and grid.steps_per_iteration == 16 * 4
    finally:
        grid.close()
    atari = RolloutOnly(s, BREAKOUT, tmp_path)
    try:
        assert isinstance(atari.collector.policy, NatureCNNActorCritic)
        assert atari.steps_per_iteration == 8 * 4
    finally:
        atari.close()


def test_sb3_gets_the_threads_ours_computes_with():
    """auto (the default): one torch thread where our MLP runs compute with one XLA thread,
    torch's default (one per core) for the Atari CNN; a number pins it, 0 is torch's default."""
    auto = bench_settings("--env-ids", "Pendulum-v1")
    assert auto.sb3_threads is None
    assert (auto.sb3_threads_for("mlp"), auto.sb3_threads_for("nature-cnn")) == (1, None)
    assert bench_settings("--sb3-threads", "auto").sb3_threads is None
    pinned = bench_settings("--sb3-threads", "3")
    assert (pinned.sb3_threads_for("mlp"), pinned.sb3_threads_for("nature-cnn")) == (3, 3)
    assert bench_settings("--sb3-threads", "0").sb3_threads_for("mlp") is None
    with pytest.raises(SystemExit):
        bench_settings("--sb3-threads", "many")


def test_sb3_threads_follow_each_env_in_one_process(tmp_path):
    """torch's thread count is process-wide: an MLP env's SB3 pins one thread, and the Atari
    env's SB3 built after it in the same bench process gets torch's default back."""
    pytest.importorskip("stable_baselines3")
    import torch

    s = bench_settings("--env-ids", "Pendulum-v1", BREAKOUT, *SMALL)
    mlp = mcpo.bench.sb3.SB3(s, "Pendulum-v1", tmp_path)
    try:
        assert mlp.torch_threads == 1 == torch.get_num_threads()
    finally:
        mlp.close()
    cnn = mcpo.bench.sb3.SB3(s, BREAKOUT, tmp_path)
    try:
        default = mcpo.bench.sb3._TORCH_DEFAULT_THREADS[0]
        assert cnn.torch_threads == default == torch.get_num_threads()
        mlp_again = mcpo.bench.sb3.SB3(s, "Pendulum-v1", tmp_path)
        mlp_again.close()
        assert torch.get_num_threads() == 1
        cnn.iterate(1)  # each turn sets its own threads again
        assert torch.get_num_threads() == default
    finally:
        cnn.close()


@pytest.mark.parametrize("env_id, policy, obs_shape, obs_dtype", [
    (BREAKOUT, "ActorCriticCnnPolicy", (4, 84, 84), "uint8"),
    (MINIGRID, "ActorCriticPolicy", (984,), "float32"),
])
def test_sb3_takes_the_family_setting(env_id, policy, obs_shape, obs_dtype, tmp_path):
    pytest.importorskip("stable_baselines3")
    s = bench_settings("--env-ids", env_id, *SMALL)
    sb3 = mcpo.bench.sb3.SB3(s, env_id, tmp_path)
    try:
        m, cfg = sb3.model, s.train_config("ppo", env_id)
        assert type(m.policy).__name__ == policy
        assert (m.observation_space.shape, str(m.observation_space.dtype)) == (obs_shape,
                                                                                obs_dtype)
        assert (m.n_envs, m.n_steps, m.n_epochs, m.batch_size) == (
            cfg.num_envs, 16, cfg.update_epochs, cfg.minibatch_size)
        assert (m.clip_range(1.0), m.ent_coef) == (cfg.algo_config.clip_coef, cfg.ent_coef)
        lr = m.lr_schedule(1.0), m.lr_schedule(0.5)
        assert lr == pytest.approx((cfg.learning_rate, cfg.learning_rate / 2) if cfg.anneal_lr
                                   else (cfg.learning_rate,) * 2)
        if env_id == BREAKOUT:
            assert m.policy.share_features_extractor
        ((wall, rollout, update),) = sb3.iterate(1)
        assert wall > 0 and rollout > 0 and update > 0
    finally:
        sb3.close()


def test_atari_and_minigrid_bench_end_to_end(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "bench.json"
    assert main(["bench", "--env-ids", MINIGRID, BREAKOUT, *SMALL, "--rounds", "1",
                 "--iterations", "1", "--systems", "env", "sb3-ppo", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "--num-steps 16, --num-minibatches 2 given, for every env" in text
    rows = table_rows(text)
    assert [MINIGRID, "minigrid", "16 x 16", "4 x 2 of 128"] in [r[:4] for r in rows]
    assert [BREAKOUT, "atari", "8 x 16", "4 x 2 of 64", "Nature CNN, shared trunk"] in [
        r[:5] for r in rows]
    data = json.loads(out.read_text())
    assert {(x["system"], x["env_id"], x["steps_per_iteration"]) for x in data["samples"]} == {
        ("env", MINIGRID, 256), ("sb3-ppo", MINIGRID, 256), ("env", BREAKOUT, 128),
        ("sb3-ppo", BREAKOUT, 128)}
    assert data["envs"][BREAKOUT]["network"] == "nature-cnn"
    assert data["summary"]["targets_by_env"] == {MINIGRID: {}, BREAKOUT: {"ppo": 2.0}}


def test_sb3_is_skipped_with_a_note_on_a_family_it_has_no_setting_for(capsys, monkeypatch):
    # Whether or not stable-baselines3 is installed (CI installs only [test]): the per-family
    # skip is decided before SB3 would be imported, so it never runs here either way.
    monkeypatch.setattr("mcpo.bench.runner.sb3_unavailable", lambda: None)
    toy_envs.register()
    assert main(["bench", "--env-ids", "mcpo_test/Counter-v0", "--num-steps", "8",
                 "--num-minibatches", "2", "--rounds", "1", "--iterations", "1",
                 "--systems", "env", "sb3-ppo"]) == 0
    text = capsys.readouterr().out
    assert "sb3-ppo skipped on mcpo_test/Counter-v0: no SB3 setting for the 'other'" in text
    systems = {r[0] for r in table_rows(text)}
    assert "env only, random actions" in systems and "SB3 PPO" not in systems
    assert "torch.set_num_threads" not in text  # SB3 never ran


def test_targets_are_per_family():
    assert targets_for("HalfCheetah-v5") == targets_for("Pendulum-v1") == {"ppo": 8.0,
                                                                           "mcpo": 6.0}
    assert targets_for("BipedalWalker-v3") == TARGETS["box2d"]
    assert targets_for(BREAKOUT) == {"ppo": 2.0}
    assert targets_for(MINIGRID) == {}


def _fake_result(ratio: dict[str, float]) -> BenchResult:
    """Every env measured at the given ours/SB3 ratio (2 rounds), no env or system built."""
    s = Settings(env_ids=tuple(ratio), systems=("ppo", "mcpo", "sb3-ppo"), rounds=2,
                 iterations=1)
    res = BenchResult(s, {"cpu": "test", "cpus": 2, "usable_cpus": 2, "versions": {}}, [], [],
                      [], "now", 1.0, envs={e: s.env_setting(e, "mlp") for e in ratio})
    for e, r in ratio.items():
        n = res.envs[e].batch_size
        for rnd in range(2):
            for name, seconds in (("ppo", 1.0), ("mcpo", 1.0), ("sb3-ppo", r)):
                res.samples.append(Sample(name, e, rnd, n, [seconds], [seconds / 2], [0.1]))
    return res


def test_summary_and_report_apply_each_family_target():
    res = _fake_result({"HalfCheetah-v5": 7.0, BREAKOUT: 3.0, MINIGRID: 5.0})
    summ = res.summary()
    assert summ["targets_by_env"] == {"HalfCheetah-v5": {"ppo": 8.0, "mcpo": 6.0},
                                      BREAKOUT: {"ppo": 2.0}, MINIGRID: {}}
    verdicts = {k: (t["target"], t["met"]) for k, t in summ["targets"].items()}
    assert verdicts == {"ppo|HalfCheetah-v5": (8.0, False), "mcpo|HalfCheetah-v5": (6.0, True),
                        f"ppo|{BREAKOUT}": (2.0, True)}
    assert summ["ratios"][f"ppo/sb3-ppo|{MINIGRID}"]["median"] == 5.0  # reported, no target
    assert summ["setup"] == {}  # nothing was built
    text = mcpo.bench.format_report(res)
    rows = table_rows(text)
    targets = [r for r in rows if len(r) == 5 and " SB3 PPO" in r[0]]
    assert [r[:2] + r[3:] for r in targets] == [
        ["PPO (ours) >= 8x SB3 PPO", "HalfCheetah-v5", "0/2", "NOT met"],
        ["MCPO (ours, N=10) >= 6x SB3 PPO", "HalfCheetah-v5", "2/2", "met"],
        ["PPO (ours) >= 2x SB3 PPO", BREAKOUT, "2/2", "met"]]
    assert f"no target on {MINIGRID}" in text
    setting = {r[0]: r[1:] for r in rows if len(r) == 7}  # the per-env settings table
    assert setting["HalfCheetah-v5"][:3] == ["mujoco", "1 x 2048", "10 x 32 of 64"]
    assert setting[BREAKOUT][:3] == ["atari", "8 x 128", "4 x 4 of 256"]
    assert setting[MINIGRID][:3] == ["minigrid", "16 x 128", "4 x 8 of 256"]
    assert setting["HalfCheetah-v5"][-1] == "PPO (ours) >= 8x, MCPO (ours, N=10) >= 6x"
    assert setting[MINIGRID][-1] == "none" and setting[BREAKOUT][-1] == "PPO (ours) >= 2x"
