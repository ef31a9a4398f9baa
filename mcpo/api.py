"""`mcpo.train` / `mcpo.resume`: train or continue runs on their config's backend.

* `--backend gymnasium`: one run per process, `mcpo.trainer` (the host loop).
* a pure-JAX backend (`--backend gymnax`): `mcpo.jaxenv.runner`, which trains `seeds` together
  in one process (vmapped) and writes one ordinary run directory per seed.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Sequence

from mcpo import trainer
from mcpo.config import TrainConfig
from mcpo.jaxenv.registry import is_jax_backend
from mcpo.jaxenv.runner import resume_group, train_group
from mcpo.rundir import read_config
from mcpo.trainer import Callback, RunResult, default_run_dir, run_name
from mcpo.types import ConfigError

SEED_FIELD = "{seed}"  # placeholder in --run-dir for the seed of each run of a group


def group_configs(cfg: TrainConfig, seeds: Sequence[int]) -> list[TrainConfig]:
    """One config per seed, each with its own run directory: `run_dir` with {seed} replaced;
    else, for several seeds, <run_dir>/<env>__<algo>__<seed>; no run_dir: the default
    runs/<env>__<algo>__<seed>__<time> (one time stamp for the group)."""
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("--seeds needs at least one seed.")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds has a seed twice: {', '.join(map(str, seeds))}.")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = []
    for s in seeds:
        c = cfg.replace(seed=s)
        if SEED_FIELD in cfg.run_dir:
            d = Path(cfg.run_dir.replace(SEED_FIELD, str(s)))
        elif cfg.run_dir and len(seeds) > 1:
            d = Path(cfg.run_dir) / run_name(c)
        elif cfg.run_dir:
            d = Path(cfg.run_dir)
        else:
            d = default_run_dir(c, stamp)
        out.append(c.replace(run_dir=str(d)))
    return out


def train(config: TrainConfig | None = None, *, seeds: Sequence[int] | None = None,
          overwrite: bool = False, callbacks: Sequence[Callback] = (),
          command: list[str] | None = None, **overrides):
    """Train a run (a RunResult), or with `seeds` one run per seed trained together in one
    process on a pure-JAX backend (a list of RunResults, in the order of `seeds`; each run's
    config is `config` with that seed, so `config.seed` itself is not used)."""
    cfg = config if config is not None else TrainConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    if not is_jax_backend(cfg.backend):
        if seeds is not None:
            raise ConfigError(f"--seeds trains several seeds in one process, which needs a "
                              f"pure-JAX backend (--backend gymnax); with --backend "
                              f"{cfg.backend} train one seed per process (--seed).")
        return trainer.train(cfg, overwrite=overwrite, callbacks=callbacks, command=command)
    cfg.validate()  # before the seeds' run directories are derived from it
    results = train_group(group_configs(cfg, [cfg.seed] if seeds is None else seeds),
                          overwrite=overwrite, callbacks=callbacks, command=command)
    return results[0] if seeds is None else results


def resume(run_dir, total_timesteps: int | None = None, *, resume_from: str | None = None,
           progress: bool | None = None, callbacks: Sequence[Callback] = ()):
    """Continue a run (a RunResult); `run_dir` a list of run directories of one pure-JAX
    group continues them together (a list of RunResults)."""
    several = not isinstance(run_dir, (str, Path))
    dirs = [Path(d) for d in (run_dir if several else [run_dir])]
    if not dirs:
        raise ConfigError("--resume needs a run directory.")
    if len(dirs) == 1 and not is_jax_backend(_backend(dirs[0])):
        result = trainer.resume(dirs[0], total_timesteps, resume_from=resume_from,
                                progress=progress, callbacks=callbacks)
        return [result] if several else result
    results = resume_group(dirs, total_timesteps, resume_from=resume_from, progress=progress,
                           callbacks=callbacks)  # several Gymnasium runs: refused there
    return results if several else results[0]


def _backend(run_dir: Path) -> str:
    """The run's backend, for choosing who resumes it; an unreadable run is the Gymnasium
    trainer's to report (with the same messages as always)."""
    try:
        return read_config(run_dir).backend
    except ConfigError:
        return "gymnasium"


__all__ = ["train", "resume", "group_configs", "RunResult"]
