"""How far one seed of our pure-JAX PPO is from its arithmetic floor on this CPU, next to the
time per iteration that issue 13's "≥ 1.5× rejax PPO" allows (benchmarks/RESULTS.md §7.1).

In rounds, in one process (rejax in its own venv), each round measures:

* ours: one seed of PPO, `--backend gymnax`, 1 env × 2048, 10 epochs × 32 minibatches of 64,
  64×64 tanh: the jitted iteration, its rollout alone and its update alone (ms);
* rejax PPO, one seed, same settings (jax_backend.rejax) — the budget is its ms per 2048
  steps divided by 1.5;
* the matmul floor: the six 64×64×64 products of one minibatch step (forward of the actor's
  and the critic's hidden layer, and each one's two backward products), 320 times in a
  jitted scan, each network with its own input, as the update does — once as six separate
  products and once as three batched (2, 64, 64) products ("stacked": actor and critic in
  one kernel);
* the env floor: the gymnax env stepped alone in a jitted scan, 2048 steps, fixed action.

    python benchmarks/update_floor.py --rejax-python /work/rejax-venv/bin/python --rounds 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jax_backend import median_ms, ours, rejax  # noqa: E402

STEPS, MB, H = 320, 64, 64   # minibatch steps per iteration, minibatch size, hidden width


@jax.jit
def six_separate(ws, xs):
    def body(c, x):
        wa, wc = c
        ga, gc = (x[0] @ wa) @ wa.T, (x[1] @ wc) @ wc.T            # forward, backward dX
        # the weight gradients x^T g, from an explicit transpose as networks.dense does
        xat, xct = jax.lax.optimization_barrier((x[0].T, x[1].T))
        return (wa - 1e-6 * (xat @ ga), wc - 1e-6 * (xct @ gc)), None
    return jax.lax.scan(body, ws, xs)[0]


@jax.jit
def three_stacked(w, xs):
    def body(w, x):
        g = jnp.einsum("kbj,kij->kbi", jnp.einsum("kbi,kij->kbj", x, w), w)
        xt = jax.lax.optimization_barrier(jnp.swapaxes(x, 1, 2))
        return w - 1e-6 * jnp.einsum("kib,kbj->kij", xt, g), None
    return jax.lax.scan(body, w, xs)[0]


def env_floor(env_id: str) -> float:
    import gymnax
    env, params = gymnax.make(env_id)
    action = env.action_space(params).sample(jax.random.PRNGKey(0))

    @jax.jit
    def run(key):
        obs, state = env.reset(key, params)

        def body(c, k):
            state, acc = c
            o, state, r, d, _ = env.step(k, state, action, params)
            return (state, acc + r + o.sum()), None
        return jax.lax.scan(body, (state, 0.0), jax.random.split(key, 2048))[0][1]
    return median_ms(run, jax.random.PRNGKey(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="Pendulum-v1")
    p.add_argument("--rejax-python", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=61_440, help="steps per training run "
                   "(default 30 iterations of 2048)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    xs = jax.random.normal(k[0], (STEPS, 2, MB, H))
    w = jax.random.normal(k[1], (2, H, H)) / 8
    rows = []
    for _ in range(a.rounds):
        o = ours("ppo", a.env_id, "gymnax", [0], a.steps)
        r = rejax(a.rejax_python, a.env_id, 1, a.steps)
        row = {"env_id": a.env_id,
               "ours_iteration_ms": o["iteration_ms"], "ours_jitted_ms": o["jitted_ms"],
               "ours_rollout_ms": o["rollout_ms"], "ours_update_ms": o["update_ms"],
               "rejax_iteration_ms": 1000 * 2048 / r["steady_sps"],
               "matmul_floor_separate_ms": median_ms(six_separate, (w[0], w[1]), xs),
               "matmul_floor_stacked_ms": median_ms(three_stacked, w, xs),
               "env_floor_ms": env_floor(a.env_id)}
        row["budget_1_5x_ms"] = row["rejax_iteration_ms"] / 1.5
        row["ratio"] = row["rejax_iteration_ms"] / row["ours_iteration_ms"]
        # what the iteration holds beyond the floor (env + the faster matmul form), and what
        # the 1.5x budget leaves for it
        floor = row["env_floor_ms"] + min(row["matmul_floor_separate_ms"],
                                          row["matmul_floor_stacked_ms"])
        row["left_for_the_rest_ms"] = row["budget_1_5x_ms"] - floor
        row["rest_today_ms"] = row["ours_iteration_ms"] - floor
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
