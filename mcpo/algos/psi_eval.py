"""The paper's Fig. 1b for a live run: is the virtual policy psi better than theta_old?

With `--eval-psi-every K` (MCPOConfig), after every K-th iteration the trainer runs this
callback: it evaluates psi (the virtual policy of the iteration's last minibatch, kept in the
state as psi_old), theta_old (the iteration's sampling policy) and, as a reference the paper's
figure lacks, theta (the policy after the iteration's update: psi is built from policies
between the two, so "psi beats theta_old" may only mean "learning progressed") for
`--eval-psi-episodes` test episodes each, deterministic (mean action) and stochastic
(sampled), on an env of its own with seeds of its own (the same seeds for every policy, so the
comparison is paired). The
observation normalization is a frozen copy of the training statistics. Nothing here touches
the training state, its RNG or its environments, so the run's other metrics are identical with
and without it, and resume stays exact.

Columns (NaN on the other iterations): eval_psi_return_det, eval_psi_return_stoch,
eval_old_return_det, eval_old_return_stoch, eval_theta_return_det, eval_theta_return_stoch,
eval_psi_time (seconds spent).

An algorithm module cannot import the trainer (layering); the trainer runs the objects
`make_callbacks` returns (AlgoSpec.make_callbacks) next to its own `Callback`s, so this class
has the same four methods and uses only the trainer's public attributes (`cfg`, `state`,
`iteration`, `agent(actor)`).
"""

from __future__ import annotations

import time

import numpy as np

from mcpo.envs import make_env
from mcpo.rollout import episode_seed, play_episodes

POLICIES = ("psi", "old", "theta")
COLUMNS = tuple(f"eval_{p}_return_{m}" for p in POLICIES for m in ("det", "stoch")) \
    + ("eval_psi_time",)


def eval_seed(seed: int, iteration: int) -> int:
    """The first test episode's seed for (run seed, iteration); apart from training's streams."""
    return episode_seed(seed, iteration, 0x9517)


class PsiEvaluation:
    def __init__(self, every: int, episodes: int):
        self.every, self.episodes = every, episodes
        self._theta_old = None

    def on_train_start(self, trainer) -> None:
        pass

    def before_iteration(self, trainer) -> None:
        self._theta_old = trainer.state.params["actor"]  # the sampling policy of this iteration

    def on_iteration(self, trainer, row: dict) -> None:
        row.update({c: float("nan") for c in COLUMNS})
        if trainer.iteration % self.every or self._theta_old is None:
            return
        t0 = time.perf_counter()
        seed = eval_seed(trainer.cfg.seed, trainer.iteration)
        env = make_env(trainer.cfg.env_id)
        try:
            actors = {"psi": trainer.state.algo.psi_old, "old": self._theta_old,
                      "theta": trainer.state.params["actor"]}
            for name in POLICIES:
                agent = trainer.agent(actors[name])
                for mode, deterministic in (("det", True), ("stoch", False)):
                    agent.seed(seed)
                    rets = [e.ret for e in play_episodes(
                        env, lambda obs: agent.act(obs, deterministic), self.episodes, seed)]
                    row[f"eval_{name}_return_{mode}"] = float(np.mean(rets))
        finally:
            env.close()
        row["eval_psi_time"] = time.perf_counter() - t0

    def on_train_end(self, trainer, result) -> None:
        pass


def make_callbacks(cfg, policy) -> list:
    mc = cfg.algo_config
    return [PsiEvaluation(mc.eval_psi_every, mc.eval_psi_episodes)] if mc.eval_psi_every else []
