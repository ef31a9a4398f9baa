"""Every registered algorithm runs on both action-space kinds through the one harness and logs
its own diagnostics, finite, in metrics.csv (issue 3, point 3)."""

import math

import pytest

import mcpo
from mcpo.algos import ALGOS
from mcpo.logger import read_metrics

# The per-algorithm diagnostics a user looks for (beyond the common losses / KL / entropy).
DIAGNOSTICS = {
    "mcpo": ["alpha", "beta_max_frac", "memory_writes", "memory_fill", "attn_weights_0",
             "attn_argmax", "d_old_theta", "d_old_psi"],
    "mcpo-mean": ["alpha", "beta_max_frac", "memory_writes", "memory_fill", "d_old_psi"],
    "ppo": ["clipfrac"],
    "kl-fixed": ["beta", "kl"],
    "kl-adaptive": ["beta", "kl"],
    "mdpo": ["kl_coef", "t_k", "kl_new_old"],
    "vmpo": ["eta", "temperature_loss", "weights_max"],
    "trgppo": ["clip_lower_mean", "clip_upper_mean", "clip_lower_min", "clip_upper_max"],
    "trpo": ["accepted", "ls_steps", "ls_kl", "cg_residual", "step_norm"],
    "a2c": [],
    "acktr": ["effective_lr", "kl_clipped", "predicted_kl"],
}
# V-MPO's KL multiplier is one alpha for categorical policies, decoupled (mean, covariance)
# for Gaussians (Song et al. 2019).
VMPO_ALPHA = {"CartPole-v1": ["alpha", "kl"], "Pendulum-v1": ["alpha_mu", "alpha_sigma",
                                                              "kl_mu", "kl_sigma"]}
COMMON = ["policy_loss", "value_loss", "entropy", "kl_old_new", "explained_variance"]


def test_every_registered_algorithm_has_its_diagnostics_listed():
    assert set(ALGOS) == set(DIAGNOSTICS)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"], ids=["discrete", "box"])
@pytest.mark.parametrize("algo", sorted(DIAGNOSTICS))
def test_runs_on_both_action_spaces_and_logs_its_diagnostics(tmp_path, algo, env_id):
    one_step = algo in ("a2c", "acktr")  # one step per rollout (they refuse epochs/minibatches)
    cfg = mcpo.TrainConfig(algo=algo, env_id=env_id, total_timesteps=384, num_envs=2,
                           num_steps=64, update_epochs=1 if one_step else 2,
                           num_minibatches=1 if one_step else 2, run_dir=str(tmp_path / "r"),
                           progress=False, tensorboard=False, eval_episodes=0, seed=0)
    result = mcpo.train(cfg)
    assert result.iterations == 3
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert len(rows) == 3
    wanted = COMMON + DIAGNOSTICS[algo] + (VMPO_ALPHA[env_id] if algo == "vmpo" else [])
    for row in rows:
        missing = [k for k in wanted if k not in row]
        assert not missing, (algo, env_id, missing)
        bad = [k for k in wanted if not math.isfinite(row[k])]
        assert not bad, (algo, env_id, bad)
    if algo in ("ppo", "kl-fixed", "kl-adaptive", "mdpo", "trgppo", "mcpo"):
        # the policy moved: some KL between the sampling policy and the updated one
        assert rows[-1]["kl_old_new"] > 0
