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
)}


def preset_for_family(family: str) -> Preset | None:
    return next((p for p in PRESETS.values() if p.family == family), None)
