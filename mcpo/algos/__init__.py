"""Algorithm registry: name -> AlgoSpec (config dataclass, init, update factory)."""

from __future__ import annotations

from mcpo.algos import kl, mcpo, ppo
from mcpo.algos import a2c, acktr, trpo
from mcpo.algos import mdpo, trgppo, vmpo
from mcpo.algos.common import AlgoSpec

ALGOS: dict[str, AlgoSpec] = {
    spec.name: spec
    for spec in (mcpo.SPEC, ppo.SPEC, kl.SPEC_FIXED, kl.SPEC_ADAPTIVE, mcpo.SPEC_MEAN,
                 trpo.SPEC, a2c.SPEC, acktr.SPEC,
                 mdpo.SPEC, vmpo.SPEC, trgppo.SPEC)
}

__all__ = ["ALGOS", "AlgoSpec"]
