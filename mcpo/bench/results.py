"""`mcpo bench` records: each system's build, each turn's timings, and their summary."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field

from mcpo.bench.settings import RATIOS, EnvSetting, Settings

@dataclass
class Build:
    """A system's setup on one env and its first iteration (JIT compile for ours)."""

    system: str
    env_id: str
    steps_per_iteration: int
    setup_seconds: float
    first_seconds: float
    first_rollout: float = math.nan
    first_update: float = math.nan


@dataclass
class Sample:
    """One system's turn in one round: the wall time of each of its iterations, and the
    rollout/update part of each (update 0 for env and rollout)."""

    system: str
    env_id: str
    round: int
    steps_per_iteration: int
    seconds: list[float]
    rollout: list[float]
    update: list[float]

    @property
    def sps(self) -> float:
        return self.steps_per_iteration * len(self.seconds) / sum(self.seconds)

    @property
    def iteration_mean(self) -> float:
        return statistics.fmean(self.seconds)

    @property
    def rollout_mean(self) -> float:
        return statistics.fmean(self.rollout)

    @property
    def update_mean(self) -> float:
        return statistics.fmean(self.update)

    @property
    def other_mean(self) -> float:
        return self.iteration_mean - self.rollout_mean - self.update_mean

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), sps=self.sps)


@dataclass
class BenchResult:
    settings: Settings
    machine: dict
    builds: list[Build]
    samples: list[Sample]
    notes: list[str]
    started: str
    seconds: float = math.nan
    complete: bool = True
    envs: dict[str, EnvSetting] = field(default_factory=dict)  # the envs measured, in order

    def of(self, system: str, env_id: str) -> list[Sample]:
        return [x for x in self.samples if x.system == system and x.env_id == env_id]

    def build(self, system: str, env_id: str) -> Build | None:
        return next((b for b in self.builds if b.system == system and b.env_id == env_id),
                    None)

    def ratios(self, num: str, den: str, env_id: str) -> list[float]:
        """num / den within each round where both were measured."""
        a = {x.round: x.sps for x in self.of(num, env_id)}
        b = {x.round: x.sps for x in self.of(den, env_id)}
        return [a[r] / b[r] for r in sorted(a) if r in b]

    def summary(self) -> dict:
        """Per "system|env": steps/s, time split and setup; per "num/den|env": ratios; per
        "system|env": each target's verdict; per env: the targets that apply ({}: none)."""
        out: dict = {"sps": {}, "ratios": {}, "targets": {}, "split": {}, "setup": {},
                     "targets_by_env": {e: dict(x.targets) for e, x in self.envs.items()}}
        for env_id, env in self.envs.items():
            for name in self.settings.systems:
                key = f"{name}|{env_id}"
                xs = self.of(name, env_id)
                b = self.build(name, env_id)
                if xs:
                    out["sps"][key] = _stats([x.sps for x in xs])
                    out["split"][key] = {
                        a: statistics.median(getattr(x, a) for x in xs)
                        for a in ("iteration_mean", "rollout_mean", "update_mean",
                                  "other_mean")}
                if b:
                    own = sum(sum(x.seconds) for x in xs)
                    steps = b.steps_per_iteration * (1 + sum(len(x.seconds) for x in xs))
                    out["setup"][key] = dict(
                        setup_s=b.setup_seconds, first_iteration_s=b.first_seconds,
                        steps=steps,
                        sps_with_setup=steps / (b.setup_seconds + b.first_seconds + own))
            for num, den in RATIOS:
                r = self.ratios(num, den, env_id)
                if r:
                    out["ratios"][f"{num}/{den}|{env_id}"] = _stats(r)
            for name, target in env.targets.items():
                r = self.ratios(name, "sb3-ppo", env_id)
                if r:
                    med = statistics.median(r)
                    out["targets"][f"{name}|{env_id}"] = dict(
                        target=target, median=med, met=med >= target,
                        rounds_met=sum(x >= target for x in r), rounds=len(r))
        return out

    def to_json(self) -> str:
        return json.dumps({"settings": dataclasses.asdict(self.settings),
                           "envs": {e: dataclasses.asdict(x) for e, x in self.envs.items()},
                           "machine": self.machine, "started": self.started,
                           "seconds": self.seconds, "complete": self.complete,
                           "notes": self.notes, "summary": self.summary(),
                           "builds": [dataclasses.asdict(b) for b in self.builds],
                           "samples": [x.to_dict() for x in self.samples]},
                          indent=2, default=_json_default)


def _json_default(v):
    return None if isinstance(v, float) and math.isnan(v) else str(v)


def _stats(v: list[float]) -> dict:
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
