"""The runs a report is made of, and "final performance", defined once.

**Final performance** of a run is the mean return of its last 100 training episodes
(`final_return` in result.json: the stochastic policy as it trained, the usual end point of
a learning curve). The deterministic evaluation of the final policy (`eval_return_mean`,
`--eval-episodes` episodes with the mean / argmax action) is reported beside it, never mixed
with it. For Atari (the paper's Table 3 rule) a run's score is its best checkpoint's
human-normalized score: the best value over training of the logged `recent_hns` column
(the human-normalized score of the last 100 training episodes), in %. Only finished runs
(result.json present) enter tables.

Runs are found under a directory (a sweep's, or any folder of run directories); a sweep's
record (sweep.json) gives each run its method label and setting, otherwise they are made from
the run's config (algorithm and the algorithm settings it was given).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from mcpo.algos import ALGOS
from mcpo.config import TrainConfig
from mcpo.experiments.sweepdir import read_sweep
from mcpo.logger import read_metrics
from mcpo.rundir import ERROR, METRICS, RESULT, is_run_dir, read_config, read_marker
from mcpo.trainer import RunResult
from mcpo.types import ConfigError

FINAL_KEY = "final_return"
EVAL_KEY = "eval_return_mean"
ATARI_KEY = "recent_hns"  # the trainer's HNS of its last 100 training episodes (a fraction)
FINAL_DOC = ("**Final performance** = the mean return of a run's last 100 training episodes "
             "(`final_return` in result.json; the stochastic policy as it trained). The "
             "deterministic evaluation of the final policy (`eval_return_mean`, mean/argmax "
             "action) is shown separately. Atari (the paper's Table 3): a run's score is its "
             "best checkpoint's human-normalized score (%), the best logged "
             "`recent_hns` (last 100 training episodes) over training. Tables use finished "
             "runs only.")
# Training settings that do not make a run a different method (for runs outside a sweep).
# flags that do not change what is trained (where, how often saved, how evaluated, shown), so
# runs that differ only in them are one setting
_BOOKKEEPING = {"seed", "run_dir", "progress", "tensorboard", "eval_episodes", "eval_mode",
                "snapshots", "checkpoint_every", "total_timesteps", "vec_env",
                "eval_psi_every", "eval_psi_episodes"}
MAX_DEPTH = 3


@dataclass
class RunRecord:
    path: Path
    config: TrainConfig
    label: str                       # method (a table's row group), e.g. "PPO"
    setting: str                     # row: label + the values that distinguish it
    order: tuple                     # sort key: the spec's order, else the algorithm's
    result: RunResult | None = None
    marker: dict = field(default_factory=dict)
    sweep: dict | None = None        # the run's record in sweep.json
    error: str | None = None
    _rows: list | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def env_id(self) -> str:
        return self.config.env_id

    @property
    def algo(self) -> str:
        return self.config.algo

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def budget(self) -> int:
        return self.config.total_timesteps

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def rows(self) -> list[dict]:
        if self._rows is None:
            f = self.path / METRICS
            self._rows = read_metrics(f) if f.is_file() else []
        return self._rows

    def column(self, key: str) -> list[float]:
        return [r.get(key, math.nan) for r in self.rows]

    def has_column(self, key: str) -> bool:
        return bool(self.rows) and key in self.rows[0]

    @property
    def is_atari(self) -> bool:
        return self.env_id.startswith("ALE/")

    def final(self) -> float:
        """Final performance (see the module docstring)."""
        if self.result is None:
            return math.nan
        if self.is_atari:
            return self.best_normalized()
        return _num(self.result.final_return)

    def evaluation(self) -> float:
        return self.result_value(EVAL_KEY)

    def result_value(self, key: str) -> float:
        """A number of the run's result.json (nan when missing or not applicable)."""
        return math.nan if self.result is None else _num(getattr(self.result, key, None))

    def best_normalized(self) -> float:
        vals = [v for v in self.column(ATARI_KEY) if not math.isnan(v)]
        return 100.0 * max(vals) if vals else math.nan  # in %, as the paper's Table 3

    def algo_value(self, key: str):
        """The effective value of a setting (algorithm config first, then the shared one)."""
        if dataclasses.is_dataclass(self.config.algo_config) and \
                hasattr(self.config.algo_config, key):
            return getattr(self.config.algo_config, key)
        return getattr(self.config, key, None)


def _num(v) -> float:
    return math.nan if v is None else float(v)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "x".join(map(str, v))
    return str(v)


def find_run_dirs(root: Path) -> list[Path]:
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found, frontier = [], [root]
    for _ in range(MAX_DEPTH):
        nxt = []
        for d in frontier:
            try:
                children = sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError:
                continue
            for c in children:
                (found if is_run_dir(c) else nxt).append(c)
        frontier = nxt
    return found


def _label_from_config(cfg: TrainConfig) -> tuple[str, str]:
    algo_fields = {f.name for f in dataclasses.fields(cfg.algo_config)} \
        if dataclasses.is_dataclass(cfg.algo_config) else set()
    parts = []
    for k in cfg.overrides:
        if k in _BOOKKEEPING:
            continue
        v = getattr(cfg.algo_config, k) if k in algo_fields else getattr(cfg, k, None)
        parts.append(f"{k}={_fmt(v)}")
    return cfg.algo, cfg.algo + (f" ({', '.join(parts)})" if parts else "")


def load_runs(root: Path) -> tuple[list[RunRecord], dict | None, list[str]]:
    """(runs, the sweep record if `root` is a sweep directory, problems): every run directory
    under `root`; unreadable ones are listed in problems, not fatal."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory (give a sweep directory or a folder of "
                          f"run directories).")
    sweep = read_sweep(root)
    sweep_runs = sweep["runs"] if sweep else {}
    order_of = {name: i for i, name in enumerate(sweep_runs)}
    settings_order: dict[str, int] = {}
    for rec in sweep_runs.values():
        settings_order.setdefault(rec.get("setting", ""), len(settings_order))
    runs, problems = [], []
    from_algo = {name: i for i, name in enumerate(ALGOS)}
    for d in find_run_dirs(root):
        try:
            cfg = read_config(d)
            marker = read_marker(d) or {}
        except ConfigError as e:
            problems.append(f"{d}: {e}")
            continue
        rec = sweep_runs.get(d.name) if d.parent.resolve() == root.resolve() else None
        if rec is not None:
            label, setting = rec["label"], rec["setting"]
            order = (0, settings_order.get(setting, 0), order_of.get(d.name, 0))
        else:
            label, setting = _label_from_config(cfg)
            order = (1, from_algo.get(cfg.algo, 99), setting)
        result = None
        f = d / RESULT
        if f.is_file():
            try:
                result = RunResult.from_dict(json.loads(f.read_text()))
            except (OSError, ValueError, TypeError) as e:
                problems.append(f"{f}: unreadable ({e})")
        err = None
        if (d / ERROR).is_file():
            err = (d / ERROR).read_text(errors="replace").strip()
        runs.append(RunRecord(d, cfg, label, setting, order, result, marker, rec, err))
    runs.sort(key=lambda r: (r.order, r.env_id, r.seed))
    return runs, sweep, problems

