"""Throughput benchmark: `mcpo bench` (docs/design.md §7; recorded results: benchmarks/RESULTS.md).

Measures steps per second, in one process and side by side, of

  env      the vector env our trainer uses, stepped with uniform random actions: no policy, no
           learning (the physical limit of a CPU environment);
  rollout  the trainer's `Collector` (our policy's action sampling in NumPy, observation and
           reward normalization, episode bookkeeping), no update;
  ppo      our PPO training, the `Trainer` running its own loop as `mcpo train` does;
  mcpo     our MCPO training (N = --memory-size, default 10);
  sb3-ppo  stable-baselines3 PPO set up as ours, when it is installed (`mcpo[bench]`).

Each env runs with its family's training preset, what `mcpo train --env-id ENV` uses (sizes,
network, learning rate, clip, normalization...; `EnvSetting`), and every system on it with the
same num-envs, num-steps, epochs and minibatches; the bench's size flags override the presets'
for every env. SB3 mirrors our PPO's config per family (mcpo/bench/sb3.py: MlpPolicy for vector
envs, its Atari stack and CnnPolicy for Atari, our one-hot encoding for MiniGrid). The targets
against SB3 are per family (`TARGETS`, docs/design.md §7). The machine is assumed shared and
noisy, so the method is:

* Per env, every system is built once (setup timed) and runs its first iteration (our JIT
  compile; warm-up for the others), which steady-state figures leave out.
* Then `--rounds` rounds: in each, every system runs `--iterations` iterations of
  num-envs x num-steps steps (`--sb3-iterations` for SB3, ~10x slower per iteration), one system
  after the other, in an order that rotates from round to round. Our trainers run in their own
  threads, blocked between turns, so nothing overlaps a measurement.
* A round gives each system's steps/s; ratios are taken within a round (measurements seconds
  apart) and everything is reported as median [min-max] over rounds. Absolute steps/s are only
  meaningful next to the ratios.

Our iterations are timed around the trainer's `_iterate` (wall clock: logging, NaN checks and
checkpoints count), the rollout/update split is the trainer's own (metrics.csv columns).
SB3's iterations are timed from a callback, rollout start to the end of `train()`. SB3 gets
the torch threads our run computes with (`--sb3-threads auto`, the default): one for MLP
networks, where one thread is as fast as two for either library (so pinning costs SB3
nothing), and torch's default (one per core) for the Atari CNN, whose convolutions do use
both cores: pinned to one thread SB3 ran Breakout at 203 steps/s instead of 315, which made
our ratio there 1.5x too flattering (benchmarks/RESULTS.md §1.0, 2026-12-06).
"""

from mcpo.bench.report import format_report
from mcpo.bench.results import BenchResult, Build, Sample
from mcpo.bench.runner import add_arguments, machine_info, run, run_from_args, \
    settings_from_args
from mcpo.bench.sb3 import make_sb3_ppo, sb3_unavailable, sb3_unsupported
from mcpo.bench.settings import DEFAULT_ENVS, FULL, QUICK, SYSTEMS, TARGETS, EnvSetting, \
    Settings, targets_for

__all__ = ["BenchResult", "Build", "EnvSetting", "Sample", "Settings", "DEFAULT_ENVS", "FULL",
           "QUICK", "SYSTEMS", "TARGETS", "add_arguments", "format_report", "machine_info",
           "make_sb3_ppo", "run", "run_from_args", "sb3_unavailable", "sb3_unsupported",
           "settings_from_args", "targets_for"]
