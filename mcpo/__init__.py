"""mcpo: Memory-Constrained Policy Optimization and on-policy trust-region baselines (JAX)."""

from mcpo.config import ConfigError, TrainConfig

__version__ = "0.1.0"


def train(config: TrainConfig | None = None, **overrides):
    """Train one run; returns a `RunResult`. See `mcpo.trainer.train`."""
    from mcpo.trainer import train as _train

    return _train(config, **overrides)


def load(run_dir, checkpoint: str | None = None):
    """Load a trained agent from a run directory; `.act(obs, deterministic=True)`."""
    from mcpo.agent import load as _load

    return _load(run_dir, checkpoint)


__all__ = ["ConfigError", "TrainConfig", "train", "load", "__version__"]
