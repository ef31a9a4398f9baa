"""--backend xminigrid: the paper's MiniGrid tasks in pure JAX through the JaxEnv interface
(mcpo/jaxenv/xminigrid_env.py), trained by the same loop as gymnax."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcpo.cli import main
from mcpo.distributions import Categorical
from mcpo.experiments.sweep import group_seeds
from mcpo.jaxenv.evaluate import make_evaluate
from mcpo.jaxenv.registry import make_jax_env
from mcpo.logger import read_metrics
from mcpo.networks import make_policy
from mcpo.types import ConfigError

from conftest import vmapped_lapack_calls

AHEAD_TILE = (5 * 7 + 3) * 2  # the cell in front of the agent (egocentric view, agent at row 6)
WALL, FORWARD, RIGHT, LEFT = 2, 0, 1, 2


def test_spaces_network_and_ids():
    env = make_jax_env("xminigrid", "MiniGrid-Unlock")
    assert env.observation_space.shape == (7 * 7 * 2 + 1,)
    assert env.action_space == gym.spaces.Discrete(6)
    assert env.max_episode_steps == 8 * 6 ** 2  # as Gymnasium's MiniGrid-Unlock-v0
    policy = make_policy(env.observation_space, env.action_space, (64, 64), env.network_kind)
    assert policy.encoder.dim == 49 * (13 + 12) + 4
    obs, _ = env.reset(jax.random.PRNGKey(0))
    feats = policy.encoder(obs[None])
    # one tile, one colour per cell and one direction are hot
    assert feats.shape == (1, 1229) and float(feats.sum()) == 49 * 2 + 1
    with pytest.raises(ConfigError, match="Did you mean 'MiniGrid-Unlock'"):
        make_jax_env("xminigrid", "MiniGrid-Unlock-v1")
    with pytest.raises(ConfigError, match="provided by --backend xminigrid"):
        make_jax_env("gymnax", "MiniGrid-UnlockPickUp")


def _scripted(obs):
    """Empty-5x5's shortest path: forward until a wall is ahead, then turn right."""
    return jnp.where(obs[AHEAD_TILE] == WALL, RIGHT, FORWARD)


def test_a_scripted_success_terminates_and_a_timeout_truncates():
    env = make_jax_env("xminigrid", "MiniGrid-Empty-5x5")
    step = jax.jit(env.step)
    obs, state = env.reset(jax.random.PRNGKey(0))
    first = obs
    for t in range(1, 6):
        out = step(jax.random.PRNGKey(t), state, _scripted(obs))
        obs, state = out.obs, out.state
        assert bool(out.terminated) == (t == 5) and not bool(out.truncated)
    # reached the goal on step 5 of 100: MiniGrid's 1 - 0.9 * steps / limit, and reset on the
    # same step (the next episode's first observation; the last one kept as final_obs)
    np.testing.assert_allclose(float(out.reward), 1 - 0.9 * 5 / 100, rtol=1e-6)
    np.testing.assert_array_equal(out.obs, first)
    assert not np.array_equal(out.final_obs, first)
    for t in range(1, 101):  # turning on the spot: never reaches the goal
        out = step(jax.random.PRNGKey(t), state, jnp.int32(LEFT))
        state = out.state
        assert bool(out.truncated) == (t == 100) and not bool(out.terminated)
        assert float(out.reward) == 0.0


@dataclass(frozen=True)
class _Fixed:
    """A 'policy' whose logits pick `rule(obs)` (any function of the observation)."""
    rule: object
    dist: Categorical = Categorical(6)

    def dist_params(self, actor, obs):
        return 100.0 * jax.nn.one_hot(self.rule(obs), 6)


@pytest.mark.parametrize("deterministic", [True, False])
def test_evaluation_counts_reached_goals_as_successes_and_timeouts_not(deterministic):
    env = make_jax_env("xminigrid", "MiniGrid-Empty-5x5")
    for rule, success, ret in ((_scripted, True, 1 - 0.9 * 5 / 100),
                               (lambda obs: jnp.int32(LEFT), False, 0.0)):
        run = jax.jit(make_evaluate(env, _Fixed(rule), 10.0, 3, deterministic))
        rets, succ = run({}, None, jax.random.PRNGKey(0))
        np.testing.assert_allclose(rets, [ret] * 3, rtol=1e-6)
        assert succ.tolist() == [success] * 3


@pytest.fixture(scope="module")
def unlock_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("unlock")
    for algo in ("mcpo", "ppo"):
        code = main(["train", "--backend", "xminigrid", "--env-id", "MiniGrid-Unlock", "--algo",
                     algo, "--seed", "1", "--total-timesteps", "4096", "--no-progress",
                     "--eval-episodes", "4", "--run-dir", str(root / algo)])
        assert code == 0
    return root


def test_trains_from_the_cli_logs_success_and_evaluates(unlock_runs, capsys):
    d = unlock_runs / "mcpo"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["preset"] == "minigrid" and cfg["num_envs"] == 16  # the family's preset
    rows = read_metrics(d / "metrics.csv")
    assert len(rows) == 2 and {"success_rate", "recent_success"} <= set(rows[0])
    result = json.loads((d / "result.json").read_text())
    for k in ("final_success_rate", "eval_success_rate", "eval_sampled_success_rate"):
        assert 0.0 <= result[k] <= 1.0, k  # the minigrid preset evaluates both ways
    assert not math.isnan(result["eval_sampled_return_mean"])
    capsys.readouterr()
    assert main(["eval", str(d), "--episodes", "3"]) == 0
    assert "success rate" in capsys.readouterr().out


def test_the_report_has_success_rate_tables(unlock_runs, tmp_path):
    assert main(["report", str(unlock_runs), "--out", str(tmp_path), "--reps", "200"]) == 0
    md = (tmp_path / "report.md").read_text()
    for key, title in (("final_success_rate", "success rate of the last 100 training"),
                       ("eval_sampled_success_rate", "success rate, sampled evaluation")):
        assert title in md
        table = md[md.index(title):].split("\n\n")[1]  # the table under the heading
        for algo in ("mcpo", "ppo"):
            value = json.loads((unlock_runs / algo / "result.json").read_text())[key]
            row = next(line for line in table.splitlines() if line.startswith(f"| {algo}"))
            assert f"{value:.2f}" in row, (row, value)


def test_seeds_train_as_one_vmapped_group(tmp_path, capsys):
    """Vmapped over seeds, xminigrid's envs with an update once deadlocked XLA's CPU runtime
    (6 of 8 tries in 2026-12; the init's QR batched over the seeds, docs/design.md §3.1):
    no LAPACK call in the vmapped init and iteration is batched now, --seeds trains the seeds
    as one group of ordinary run directories, and a sweep groups them."""
    from mcpo.algos import ALGOS
    from mcpo import make_config
    from mcpo.jaxenv.loop import Loop

    env = make_jax_env("xminigrid", "MiniGrid-Unlock")
    cfg = make_config("ppo", "MiniGrid-Unlock", backend="xminigrid", num_envs=2, num_steps=32,
                      num_minibatches=2, update_epochs=1, total_timesteps=64)
    policy = make_policy(env.observation_space, env.action_space, cfg.hidden_sizes,
                         env.network_kind)
    loop = Loop(cfg, ALGOS["ppo"], policy, env, 100, success=True)
    calls = vmapped_lapack_calls(loop, jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)]))
    assert calls and all(len(shape) == 2 for _, shape in calls), calls

    code = main(["train", "--backend", "xminigrid", "--env-id", "MiniGrid-Unlock",
                 "--seeds", "1,2", "--total-timesteps", "4096", "--no-progress",
                 "--eval-episodes", "2", "--run-dir", str(tmp_path / "g" / "s{seed}")])
    assert code == 0
    assert "Group: 2 runs" in capsys.readouterr().out
    rows = {s: read_metrics(tmp_path / "g" / f"s{s}" / "metrics.csv") for s in (1, 2)}
    assert len(rows[1]) == len(rows[2]) >= 1 and "success_rate" in rows[1][0]
    assert rows[1][0]["policy_loss"] != rows[2][0]["policy_loss"]

    def job(backend, seed):
        cfg = {"backend": backend, "algo": "ppo", "env_id": "x", "seed": seed,
               "run_dir": f"d{backend}{seed}"}
        return {"name": f"{backend}{seed}", "config": cfg, "command": ["mcpo", "train"],
                "imports": [], "track": None}

    jobs = [job(b, s) for b in ("gymnax", "xminigrid") for s in (1, 2)]
    out = group_seeds(jobs, {j["name"] for j in jobs})
    assert [len(j.get("members", [j])) for j in out] == [2, 2]
