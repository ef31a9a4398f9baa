"""mcpo: Memory-Constrained Policy Optimization and on-policy trust-region baselines (JAX).

    import mcpo
    result = mcpo.train(mcpo.make_config("mcpo", "Pendulum-v1", total_timesteps=200_000))
    agent = mcpo.load(result.run_dir)
    results = mcpo.train(mcpo.make_config("ppo", "CartPole-v1", backend="gymnax"),
                         seeds=[0, 1, 2, 3, 4])      # 5 seeds vmapped in one process
"""

from mcpo.agent import Agent, load
from mcpo.api import resume, train
from mcpo.config import TrainConfig
from mcpo.presets import make_config
from mcpo.trainer import Callback, RunResult
from mcpo.types import CheckpointError, ConfigError, MCPOError, NonFiniteError

__version__ = "0.1.0"

__all__ = ["Agent", "Callback", "CheckpointError", "ConfigError", "MCPOError",
           "NonFiniteError", "RunResult", "TrainConfig", "load", "make_config", "resume",
           "train", "__version__"]
