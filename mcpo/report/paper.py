"""The paper's own numbers (Tables 1-3, every cell as printed: paper_numbers.json, shipped with
the package) and which of our runs each cell is compared with.

A cell of Tables 1 and 2 matches our runs of its env (any of the listed env ids) and algorithm
whose effective settings equal the row's (Table 1 gives them: PPO's clip 0.3, MCPO's N, ...;
Table 2's "best tuned" rows do not, so every setting of the algorithm matches and the one with
the best mean is compared, as the paper compares its best tuned models). The difference is in
units of the paper's std: (ours - paper) / paper std.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def paper_numbers() -> dict:
    return json.loads(resources.files(__package__).joinpath("paper_numbers.json").read_text())


def setting_matches(run, setting: dict) -> bool:
    """Do the run's effective settings equal the paper row's?"""
    for k, want in setting.items():
        have = run.algo_value(k)
        if isinstance(want, float) or isinstance(have, float):
            if have is None or not math.isclose(float(have), float(want), rel_tol=1e-9):
                return False
        elif have != want:
            return False
    return True


def paper_env_of(env_id: str) -> tuple[str, str] | None:
    """(table, paper column) whose env ids include `env_id`."""
    for tname, t in paper_numbers()["tables"].items():
        for col, e in t.get("envs", {}).items():
            if env_id in e["env_ids"]:
                return tname, col
    return None


def difference_in_std(ours: float, mean: float, std: float) -> float:
    if std is None or std == 0 or math.isnan(ours):
        return math.nan
    return (ours - mean) / std
