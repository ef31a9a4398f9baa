"""mcpo: Memory-Constrained Policy Optimization and on-policy trust-region baselines (JAX).

    import mcpo
    result = mcpo.train(mcpo.make_config("mcpo", "Pendulum-v1", total_timesteps=200_000))
    agent = mcpo.load(result.run_dir)
"""

from mcpo.agent import Agent, load
from mcpo.config import TrainConfig
from mcpo.presets import make_config
from mcpo.trainer import Callback, RunResult, resume, train
from mcpo.types import CheckpointError, ConfigError, MCPOError, NonFiniteError

__version__ = "0.1.0"

__all__ = ["Agent", "Callback", "CheckpointError", "ConfigError", "MCPOError",
           "NonFiniteError", "RunResult", "TrainConfig", "load", "make_config", "resume",
           "train", "__version__"]
