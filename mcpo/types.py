"""Leaf module: the errors and exit codes users see, `param` fields with bounds, number parsing.

It imports nothing of ours, so every layer (algorithms, envs, run directories, trainer, CLI) can
depend on it without import cycles (the role Brax's `training/types.py` plays).

Exit codes (documented in the README and `mcpo --help`), carried by the error classes:

    0  done
    2  bad input: a flag, a config file, a spec, a run directory that is not what it must be;
       nothing was written or lost
    3  NaN/Inf stopped the run (the last good checkpoint is kept)
    4  the run directory is in use by another process (its lock is held)
    5  an operating-system fault while writing (disk full, permission lost, ...); what was
       written before is intact
    128 + N  stopped by signal N (SIGINT 130, SIGTERM 143) after writing a checkpoint
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import field
from typing import Any

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3
EXIT_BUSY = 4
EXIT_IO = 5

# Integers cross into NumPy/JAX int64 and XLA int32 counters; these bound what we accept.
INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1          # JAX PRNGKey and NumPy SeedSequence entropy: one uint32 word
MAX_TIMESTEPS = 10**12        # a trillion env steps; derived counters are checked separately


class MCPOError(Exception):
    """An error meant for the user: one paragraph, and the exit code the CLI returns."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(MCPOError, ValueError):
    """Bad user input: raised before any work starts (or before anything is changed)."""


class CheckpointError(ConfigError):
    """Missing, corrupt or mismatched checkpoint."""


class RunDirBusy(MCPOError):
    """Another live process holds the run directory's lock."""

    exit_code = EXIT_BUSY


class StorageError(MCPOError):
    """The OS refused a write (disk full, read-only, permissions); nothing before it is lost."""

    exit_code = EXIT_IO


class NonFiniteError(MCPOError):
    """A loss, parameter, reward or observation became NaN/Inf."""

    exit_code = EXIT_NONFINITE


# ----------------------------------------------------------------------------------------------
# Config fields
# ----------------------------------------------------------------------------------------------
def param(default: Any, help: str, *, low: float | None = None, high: float | None = None,
          low_open: bool = False, high_open: bool = False, choices: tuple | None = None,
          cli: bool = True):
    """A dataclass field with help text and bounds (closed unless `*_open`)."""
    meta = dict(help=help, low=low, high=high, low_open=low_open, high_open=high_open,
                choices=choices, cli=cli)
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def show_number(x) -> str:
    """A number as a user wrote it: integers in full (4294967295, not 4.29497e+09) unless
    huge, floats in their shortest exact form (1e-06, 0.5)."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e16):
        v = int(x)
        return str(v) if abs(v) < 10**16 else f"{float(v):.3g}"
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def bounds_text(meta) -> str:
    """'>= 1 and <= 1024', '> 0', ... for a `param` field's metadata ('' when unbounded)."""
    parts = []
    if meta.get("low") is not None:
        parts.append(f"{'>' if meta['low_open'] else '>='} {show_number(meta['low'])}")
    if meta.get("high") is not None:
        parts.append(f"{'<' if meta['high_open'] else '<='} {show_number(meta['high'])}")
    return " and ".join(parts)


def check_fields(obj: Any) -> None:
    """Check each field of a `param`-declared dataclass: its type, bounds and choices."""
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if not meta or "help" not in meta:
            continue
        value = getattr(obj, f.name)
        where = flag_name(f.name)
        check_type(where, f.type, value)
        if meta.get("choices") is not None:
            choices = meta["choices"]
            if value not in choices:
                close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}; "
                                  f"got {value!r}.{hint}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number; got {value!r}.")
        lo, hi = meta.get("low"), meta.get("high")
        bad = ((lo is not None and (value < lo or (meta["low_open"] and value == lo)))
               or (hi is not None and (value > hi or (meta["high_open"] and value == hi))))
        if bad:
            got = show_number(value) if isinstance(value, int) else repr(value)
            raise ConfigError(f"{where} must be {bounds_text(meta)}; got {got}.")


_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string",
               "bool": "true or false"}


def check_type(where: str, type_name: str, value: Any) -> None:
    """ConfigError unless `value` fits the annotation `type_name` of a config field (a string,
    since the config modules use `from __future__ import annotations`); `X | None` also takes
    None ("not given")."""
    t = str(type_name)
    if t.endswith(" | None"):
        if value is None:
            return
        t = t.removesuffix(" | None")
    ok = True
    if t == "bool":
        ok = isinstance(value, bool)
    elif t == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif t == "str":
        ok = isinstance(value, str)
    elif t.startswith("tuple[int"):
        ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool)
                                              for v in value)
    elif t.startswith("tuple[str"):
        ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if not ok:
        want = _TYPE_NAMES.get(t, ("a list of integers" if t.startswith("tuple[int")
                                   else "a list of strings" if t.startswith("tuple[str")
                                   else t))
        raise ConfigError(f"{where} must be {want}; got {value!r} "
                          f"({type(value).__name__}).")


# ----------------------------------------------------------------------------------------------
# Number parsing (CLI and spec files)
# ----------------------------------------------------------------------------------------------
_INT_RE = re.compile(r"^[+-]?\d[\d_]*$")
_PARSE_DIGITS = 40  # beyond every bound we have; keeps int() away from huge digit strings


def parse_int(s: str) -> int:
    """Integers written as 1000000, 1_000_000 or 1e6. Raises ValueError (with a message) for
    anything else: fractions, nan/inf, text. Range limits are the fields' bounds (checked by
    `check_fields`, which names the flag and its range); only absurd sizes stop here."""
    text = str(s).strip()
    if _INT_RE.match(text):
        digits = text.replace("_", "").lstrip("+-")
        if len(digits.lstrip("0")) > _PARSE_DIGITS:
            raise ValueError(f"{s!r} is far too large")
        v = int(text.replace("_", ""))
    else:
        try:
            f = float(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"expected an integer, got {s!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"expected an integer, got {s!r}")
        if not f.is_integer():
            raise ValueError(f"expected an integer, got {s!r} (not a whole number)")
        if abs(f) >= 10.0**_PARSE_DIGITS:
            raise ValueError(f"{s!r} is far too large")
        v = int(f)
    return v


def parse_float(s: str) -> float:
    """Finite floats; 'nan' and 'inf' are refused here rather than deep inside training."""
    try:
        f = float(str(s).strip())
    except ValueError:
        raise ValueError(f"expected a number, got {s!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"expected a finite number, got {s!r}")
    return f
