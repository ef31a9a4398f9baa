"""Training presets: the settings each environment family needs, as data.

A preset has `shared` values for TrainConfig fields and, per algorithm, values that only that
algorithm takes on this family (its own hyperparameters included). `mcpo.presets.make_config`
layers them (later wins):

    TrainConfig defaults -> preset.shared -> the algorithm's defaults (AlgoSpec.defaults)
        -> preset.per_algo[algo] -> the user's flags

Where the MCPO paper's appendix values are unknown (it is not available), a family's values
are the standard ones of the method's own paper or of the reference implementations, and each
preset says where its numbers come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Preset:
    name: str
    family: str              # mcpo.envs.FAMILIES: the env ids that select it by default
    description: str
    shared: Mapping[str, Any] = field(default_factory=dict)
    per_algo: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""


# The PPO backbone the paper builds on (docs/design.md §3; Schulman et al. 2017's MuJoCo
# settings, which are also TrainConfig's defaults): 1 env x T 2048, 10 epochs x 32 minibatches
# of 64, Adam 3e-4 linearly annealed, gamma 0.99, lambda 0.95, observation and reward
# normalization, separate 64-64 tanh actor and critic.
_PPO_BACKBONE: dict[str, Any] = dict(num_envs=1, num_steps=2048, update_epochs=10,
                                     num_minibatches=32, learning_rate=3e-4, anneal_lr=True,
                                     gamma=0.99, gae_lambda=0.95, norm_obs=True,
                                     norm_reward=True, hidden_sizes=(64, 64))

# MiniGrid: the MiniGrid authors' PPO baseline (rl-starter-files with torch-ac): 16 envs x 128
# frames per update, 4 epochs, minibatch 256 (= 8 minibatches), Adam lr 1e-3, entropy 0.01,
# gamma 0.99, lambda 0.95, grad-norm clip 0.5. Sparse rewards in [0, 1]: no reward scaling;
# the observation is a one-hot grid, not normalized.
_MINIGRID: dict[str, Any] = dict(num_envs=16, num_steps=128, update_epochs=4, num_minibatches=8,
                                 learning_rate=1e-3, anneal_lr=False, gamma=0.99,
                                 gae_lambda=0.95, ent_coef=0.01, norm_obs=False,
                                 norm_reward=False, hidden_sizes=(64, 64), eval_mode="both")

# Atari (see the preset's source): the Nature CNN ignores hidden_sizes. The end-of-run
# evaluation samples actions, as the PPO/A2C papers' scores are those of the sampling policy; a
# greedy policy can also stall a game (Breakout without FIRE runs to the 108k-frame limit).
_ATARI: dict[str, Any] = dict(num_envs=8, num_steps=128, update_epochs=4, num_minibatches=4,
                              learning_rate=2.5e-4, anneal_lr=True, gamma=0.99, gae_lambda=0.95,
                              ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, norm_obs=False,
                              norm_reward=False, clip_reward=10.0, eval_mode="sampled")
_ATARI_PER_ALGO: dict[str, dict[str, Any]] = {
    "ppo": dict(clip_coef=0.1),
    # Mnih et al. 2016 (A3C/A2C on Atari): 16 workers x t_max 5, entropy 0.01, n-step returns
    # (lambda 1); lr 7e-4 as OpenAI Baselines' a2c (its RMSProp; this harness uses Adam).
    "a2c": dict(num_envs=16, num_steps=5, gae_lambda=1.0, learning_rate=7e-4),
    # MCPO paper Table 3 uses N = 10 on Atari (our default memory size too). The per-slot
    # features (our default elsewhere, docs/design.md §4.1) cost N forwards of the Nature CNN
    # per minibatch and have no Atari evidence: the paper's context-only attention here.
    "mcpo": dict(memory_size=10, attn_slot_features=False),
}

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("classic", "classic",
           "Gymnasium classic control (Pendulum, CartPole, Acrobot, MountainCar...): the PPO "
           "backbone of the paper's Table 1.",
           shared=_PPO_BACKBONE,
           source="Schulman et al. 2017 (PPO) MuJoCo settings; MCPO paper §4.1 trains its "
                  "classic-control comparison on this backbone."),
    Preset("box2d", "box2d",
           "Box2D (LunarLander(Continuous), BipedalWalker(Hardcore)): the PPO backbone of the "
           "paper's Table 1 and ablation study.",
           shared=_PPO_BACKBONE,
           source="as 'classic' (MCPO paper §4.1, §4.5 give no other values)."),
    Preset("mujoco", "mujoco",
           "MuJoCo locomotion (HalfCheetah, Hopper, Walker2d, Ant, Humanoid, "
           "HumanoidStandup): 1 env x 2048, 10 epochs x 32 minibatches, lr 3e-4 annealed, "
           "observation and reward normalization (paper Table 2).",
           shared=_PPO_BACKBONE,
           source="Schulman et al. 2017, Table 3 (MuJoCo 1M-step benchmark)."),
    Preset("minigrid", "minigrid",
           "MiniGrid (Unlock, UnlockPickup, every MiniGrid-* id): 16 envs x 128 steps, 4 epochs "
           "x 8 minibatches, lr 1e-3, entropy 0.01, no observation or reward normalization "
           "(one-hot grid encoder + 64-64 MLPs); evaluation both greedy and sampled.",
           shared=_MINIGRID,
           source="PPO settings of the MiniGrid authors' baselines (rl-starter-files / torch-ac: "
                  "16 processes x 128 frames, 4 epochs, batch 256, lr 1e-3, entropy 0.01, "
                  "gamma 0.99, lambda 0.95, clip 0.2); measured choice on Unlock-v0 at 100k "
                  "steps in benchmarks/RESULTS.md (MiniGrid section)."),
    Preset("atari", "atari",
           "Atari (ALE/<Game>-v5, standard preprocessing, Nature CNN with a shared trunk): "
           "8 envs x 128 steps, 4 epochs x 4 minibatches, lr 2.5e-4 annealed, clip 0.1, "
           "entropy 0.01, value coefficient 0.5, no observation or reward normalization "
           "(rewards clipped to their sign for training).",
           shared=_ATARI, per_algo=_ATARI_PER_ALGO,
           source="PPO's Atari settings (Schulman et al. 2017, Table 5: 8 actors x horizon 128, "
                  "lr 2.5e-4 annealed, clip 0.1, entropy 0.01, gamma 0.99, lambda 0.95) in the "
                  "form of OpenAI Baselines' ppo2 / CleanRL's ppo_atari (4 epochs x 4 "
                  "minibatches, value coefficient 0.5, clip not annealed; Huang et al. 2022, "
                  "'The 37 implementation details of PPO'). A2C: Mnih et al. 2016 (16 workers x "
                  "t_max 5, entropy 0.01, n-step returns), with this harness's Adam."),
)}


def preset_for_family(family: str) -> Preset | None:
    return next((p for p in PRESETS.values() if p.family == family), None)
