"""stable-baselines3 PPO set up exactly as `mcpo bench` sets it up (mcpo.bench.make_sb3_ppo:
our PPO config of the env's family preset, the size flags over it), as a whole process: for
timing `mcpo train --algo ppo` against SB3 from outside, start-up, imports and (for ours) JIT
compilation included. Needs `pip install -e '.[bench]'`.

    /usr/bin/time -v python benchmarks/sb3_ppo.py --env-id Pendulum-v1 --total-timesteps 20480
    /usr/bin/time -v mcpo train --algo ppo --env-id Pendulum-v1 --total-timesteps 20480 \
        --run-dir /tmp/ppo --overwrite --no-progress --eval-episodes 0 --snapshots 0
"""

from __future__ import annotations

import argparse
import time

from mcpo.bench import make_sb3_ppo
from mcpo.bench.settings import SIZE_FIELDS
from mcpo.presets import make_config
from mcpo.types import flag_name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="Pendulum-v1")
    p.add_argument("--total-timesteps", type=int, default=20480)
    for k in SIZE_FIELDS:
        p.add_argument(flag_name(k), type=int, default=None,
                       help="default: the env's family preset")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch.set_num_threads; 0 keeps torch's default (default: 1, as the "
                   "bench)")
    a = p.parse_args()
    import torch

    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    t0 = time.perf_counter()
    sizes = {k: getattr(a, k) for k in SIZE_FIELDS if getattr(a, k) is not None}
    cfg = make_config("ppo", a.env_id, seed=a.seed, total_timesteps=a.total_timesteps, **sizes)
    model = make_sb3_ppo(cfg.validate())
    model.learn(total_timesteps=a.total_timesteps)
    dt = time.perf_counter() - t0
    print(f"SB3 PPO {a.env_id}: {model.num_timesteps} steps in {dt:.1f} s, "
          f"{model.num_timesteps / dt:,.0f} steps/s (model setup included; torch threads "
          f"{torch.get_num_threads()})")


if __name__ == "__main__":
    main()
