"""The paper's experiments as sweep specs (YAML data shipped with the package), runnable as
`mcpo sweep --preset NAME --out DIR [--scale 0.05]`. The format is described in
mcpo/experiments/spec.py; `mcpo sweep --preset NAME --print-spec` prints one to copy."""

from __future__ import annotations

import difflib
from importlib import resources

from mcpo.types import ConfigError

SUFFIX = ".yaml"


def names() -> list[str]:
    return sorted(p.name[:-len(SUFFIX)] for p in resources.files(__name__).iterdir()
                  if p.name.endswith(SUFFIX))


def text(name: str) -> str:
    """The YAML text of experiment preset `name`."""
    known = names()
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown experiment preset {name!r}.{hint} Presets: "
                          f"{', '.join(known)}.")
    return resources.files(__name__).joinpath(name + SUFFIX).read_text()
