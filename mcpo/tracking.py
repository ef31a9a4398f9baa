"""Optional Weights & Biases tracking (`--track`; the `wandb` extra), as a trainer `Callback`.

One W&B run per training run: its id is derived from the run directory (its path and the time
its marker was written), so a resumed run continues the same W&B run; a sweep groups its runs
by the sweep's name. W&B's files live in the run directory's `wandb/` folder (a name the
run-directory format knows, mcpo.rundir.WANDB_DIR). Offline mode works without a network:
`WANDB_MODE=offline` (or `mode="offline"`), then `wandb sync <run>/wandb/offline-run-*`.

Logged: every metrics.csv column of every iteration at step = global_step, the run's config,
and its result (result.json's fields) as the summary.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

from mcpo.logger import expand
from mcpo.rundir import MARKER, WANDB_DIR
from mcpo.trainer import Callback
from mcpo.types import ConfigError


def check_available() -> None:
    """ConfigError (before anything is written) when wandb is not installed."""
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError("--track needs Weights & Biases, which is not installed: "
                          "pip install 'mcpo[wandb]' (offline logging needs no account: "
                          "WANDB_MODE=offline).")


def wandb_run_id(run_dir: Path) -> str:
    """A W&B run id that is the same for every process training this run directory."""
    run_dir = Path(run_dir).resolve()
    created = ""
    try:
        created = str(json.loads((run_dir / MARKER).read_text()).get("created"))
    except (OSError, ValueError):
        pass
    return hashlib.sha1(f"{run_dir}|{created}".encode()).hexdigest()[:16]


class WandbCallback(Callback):
    """Logs a run to W&B. `mode`: None (W&B's default or WANDB_MODE), 'online', 'offline' or
    'disabled'."""

    def __init__(self, project: str = "mcpo", group: str | None = None,
                 entity: str | None = None, mode: str | None = None):
        self.project, self.group, self.entity, self.mode = project, group, entity, mode
        self.run = None

    def on_train_start(self, trainer) -> None:
        import wandb

        (Path(trainer.run_dir) / WANDB_DIR).mkdir(exist_ok=True)
        cfg = trainer.cfg
        self.run = wandb.init(
            project=self.project, entity=self.entity, group=self.group, mode=self.mode,
            name=Path(trainer.run_dir).name, id=wandb_run_id(trainer.run_dir),
            resume="allow", dir=str(trainer.run_dir), job_type=cfg.algo,
            config=cfg.to_dict(), reinit="create_new",
            settings=wandb.Settings(console="off", silent=True))

    def on_iteration(self, trainer, row: dict) -> None:
        if self.run is None:
            return
        flat = {k: v for k, v in expand(row).items()
                if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
        self.run.log(flat, step=int(row["global_step"]))

    def on_train_end(self, trainer, result) -> None:
        if self.run is None:
            return
        self.run.summary.update({k: v for k, v in result.to_dict().items() if v is not None})
        self.finish(0)

    def finish(self, exit_code: int = 0) -> None:
        """End the W&B run (also after an error: then with a non-zero exit code)."""
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
