"""rejax PPO (pure-JAX, PureJaxRL style) at our settings, for the throughput comparison in
benchmarks/RESULTS.md §3. Runs in its OWN venv (rejax 0.1.3 needs gymnax 0.0.9; it is not a
dependency of mcpo and nothing of mcpo is imported here):

    python3 -m venv /work/wt/gymnax-rejax-venv && . /work/wt/gymnax-rejax-venv/bin/activate
    pip install jax==0.10.2 jaxlib==0.10.2 optax==0.2.8 numpy==2.4.6 gymnax==0.0.9 \
        six==1.17.0 rejax==0.1.3
    python benchmarks/rejax_ppo.py --env-id Pendulum-v1 --seeds 5 --total-timesteps 1000000

Settings as ours (docs/design.md §3): 1 env x 2048 steps, 10 epochs x 32 minibatches, Adam 3e-4,
gamma 0.99, lambda 0.95, clip 0.2, value coefficient 0.5, no entropy bonus, gradient clip 0.5,
observation and reward normalization, 64x64 tanh actor and critic. rejax's periodic evaluation
(128 episodes every eval_freq steps) is set to run once, at the end, and is timed separately.
Prints one JSON line: compile seconds, training seconds (compiled, run), steps/s.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import rejax


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="Pendulum-v1")
    p.add_argument("--seeds", type=int, default=1, help="vmapped seeds (default: 1)")
    p.add_argument("--total-timesteps", type=int, default=102_400)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--num-steps", type=int, default=2048)
    a = p.parse_args()
    t0 = time.perf_counter()
    algo = rejax.PPO.create(
        env=a.env_id, num_envs=a.num_envs, num_steps=a.num_steps, num_epochs=10,
        num_minibatches=32, learning_rate=3e-4, max_grad_norm=0.5, gamma=0.99,
        gae_lambda=0.95, clip_eps=0.2, vf_coef=0.5, ent_coef=0.0,
        normalize_observations=True, normalize_rewards=True,
        total_timesteps=a.total_timesteps, eval_freq=a.total_timesteps,
        skip_initial_evaluation=True,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)})
    keys = jax.random.split(jax.random.PRNGKey(0), a.seeds)
    train = jax.jit(jax.vmap(algo.train))
    compiled = train.lower(keys).compile()
    t1, c1 = time.perf_counter(), os.times()
    ts, (_, returns) = compiled(keys)
    jax.block_until_ready(ts)
    t2, c2 = time.perf_counter(), os.times()
    steps = int(jnp.max(ts.global_step)) * a.seeds
    print(json.dumps({"system": "rejax PPO", "env_id": a.env_id, "seeds": a.seeds,
                      "steps": steps, "setup_compile_s": t1 - t0, "train_s": t2 - t1,
                      "wall_s": t2 - t0, "sps": steps / (t2 - t1),
                      "train_cpu_s": c2.user - c1.user + c2.system - c1.system,
                      "final_eval_return": float(jnp.mean(returns[..., -1, :]))}))


if __name__ == "__main__":
    main()
