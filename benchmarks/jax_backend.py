"""Throughput of the pure-JAX backend (`--backend gymnax`) next to our Gymnasium backend,
rejax PPO and stable-baselines3 PPO, in one sitting (benchmarks/RESULTS.md §4).

Every system trains with the same settings: 1 env x 2048 steps, 10 epochs x 32 minibatches,
64x64 tanh actor and critic, observation and reward normalization (our classic preset; rejax
and SB3 configured to match). Per env and system, 1 seed and 5 seeds:

* ours, gymnax: one process, seeds vmapped (`mcpo.train(cfg, seeds=...)`) and split over one
  CPU device per core as `mcpo train` does (mcpo.xla_threads.split_devices), cold compile
  (MCPO_COMPILE_CACHE=0); per-iteration wall from the trainer's Callback hooks, split into
  the jitted iteration (its `iteration_time`) and host work; rollout vs update measured by
  jitting each alone on the final state.
* ours, gymnasium: 1 seed in this process; 5 seeds as 5 concurrent `mcpo train` processes.
* rejax PPO: its own venv (`--rejax-python`), `benchmarks/rejax_ppo.py`, seeds vmapped.
* SB3 PPO: `benchmarks/sb3_ppo.py` (needs `pip install -e ".[bench]"`), 5 seeds as 5
  concurrent processes.

    python benchmarks/jax_backend.py --json bench_jax.json \
        --rejax-python /work/wt/gymnax-rejax-venv/bin/python
    python benchmarks/jax_backend.py --full-run    # + MCPO and rejax PPO, 5 seeds x 1M each
    python benchmarks/jax_backend.py --paired-rounds 5 --rejax-python ...  # 1-seed PPO only,
                                                   # ours and rejax alternating

"steady" steps/s leave out the first iteration (our JIT compile; rejax: its compile is
separate); "incl. start" divides by the wall time of the whole process or call.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import mcpo
from mcpo import xla_threads
from mcpo.jaxenv.runner import GroupRunner
from mcpo.logger import read_metrics
from mcpo.rollout import prepare_batch

ROOT = Path(__file__).resolve().parents[1]
COMMON = dict(num_envs=1, num_steps=2048, update_epochs=10, num_minibatches=32,
              progress=False, tensorboard=False, eval_episodes=0, snapshots=0,
              checkpoint_every=10**9)


def load() -> float:
    return os.getloadavg()[0]


def cpu_s(who=resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


class Timer(mcpo.Callback):
    """Wall and CPU time per iteration (member 0 of a group): between consecutive
    `on_iteration`s. CPU time (all threads of this process) is the load-robust figure on a
    shared machine."""

    def __init__(self):
        self.starts, self.cpu = [], []

    def on_train_start(self, trainer):
        if getattr(trainer, "index", 0) == 0:
            self.starts.append(time.perf_counter())
            self.cpu.append(cpu_s())

    def on_iteration(self, trainer, row):
        if getattr(trainer, "index", 0) == 0:
            self.starts.append(time.perf_counter())
            self.cpu.append(cpu_s())


class Splitter(mcpo.Callback):
    """Keeps the group runner, to time rollout and update alone on its final state."""

    def on_train_start(self, trainer):
        self.group = getattr(trainer, "group", None)


def median_ms(f, *args, n: int = 20) -> float:
    """Median wall ms of `f(*args)` over n calls, after one call to compile and warm up."""
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def split_times(group: GroupRunner, n: int = 5) -> dict:
    """ms per call of the jitted iteration alone, its rollout alone and its update alone (GAE
    included), on the group's final state (every program dispatched at once, each on its
    own device; a floating seed's on its first device, so these calls run in lockstep, not
    in the trainer's pipelined schedule)."""
    policy, cfg = group.policy, group.cfg
    shards = group.state_on_devices()
    # each program as the group runs it: vmapped, or one seed's own functions
    rollout, update = [], []
    for k in range(len(shards)):
        loop, over = group.functions(k)
        prep = jax.jit(over(lambda s, r: prepare_batch(policy, s.train.params, r, cfg.gamma,
                                                       cfg.gae_lambda)))
        rollout.append(jax.jit(over(lambda s, loop=loop: loop.rollout(s)[0])))
        update.append(lambda s, r, up=jax.jit(over(loop.update)), prep=prep:
                      up(s.train, prep(s, r)))
    ros = [f(s) for f, s in zip(rollout, shards)]
    steps = [group.step_function(k) for k in range(len(shards))]
    out = {}
    for name, fs, args in (("jitted", steps, (shards,)), ("rollout", rollout, (shards,)),
                           ("update", update, (shards, ros))):
        out[name] = median_ms(lambda fs=fs, args=args: [f(*a) for f, *a in zip(fs, *args)], n=n)
    return out


def ours(algo: str, env_id: str, backend: str, seeds: list[int], steps: int) -> dict:
    os.environ["MCPO_COMPILE_CACHE"] = "0"
    tmp = Path(tempfile.mkdtemp(prefix="jaxbench-"))
    timer, splitter = Timer(), Splitter()
    cfg = mcpo.make_config(algo, env_id, backend=backend, total_timesteps=steps,
                           run_dir=str(tmp / ("r{seed}" if len(seeds) > 1 else "r")),
                           **COMMON)
    la = load()
    t0, c0 = time.perf_counter(), cpu_s()
    if backend == "gymnasium":
        results = [mcpo.train(cfg.replace(seed=seeds[0]), callbacks=[timer])]
    else:
        results = mcpo.train(cfg, seeds=seeds, callbacks=[timer, splitter])
    wall = time.perf_counter() - t0
    iters = np.diff(timer.starts)[1:]   # per-iteration wall, first (compile) left out
    cpu = np.diff(timer.cpu)[1:]
    G = len(seeds)
    batch = cfg.batch_size
    out = {"system": f"ours {backend} {algo}", "env_id": env_id, "seeds": G,
           "steady_sps": G * batch / float(np.median(iters)),
           "steady_cpu_sps": G * batch / float(np.median(cpu)),
           "wall_s": wall, "incl_start_sps": G * results[0].global_step / wall,
           "incl_start_cpu_sps": G * results[0].global_step / (cpu_s() - c0),
           "iteration_ms": 1000 * float(np.median(iters)),
           "first_iteration_s": float(timer.starts[1] - timer.starts[0]),
           "load": [la, load()]}
    if backend == "gymnasium":
        rows = read_metrics(Path(results[0].run_dir) / "metrics.csv")[1:]
        out["rollout_ms"] = 1000 * float(np.median([r["rollout_time"] for r in rows]))
        out["update_ms"] = 1000 * float(np.median([r["update_time"] for r in rows]))
    else:
        out.update({f"{k}_ms": v for k, v in split_times(splitter.group).items()})
    # host: what the iteration's wall time has beyond its computation (for gymnax, the part
    # of the logging and checkpoints that the next iteration's computation does not hide).
    # Not defined for a group with floating seeds: its iterations overlap (two in flight),
    # so the lockstep "jitted" time above is longer than an iteration.
    if backend == "gymnasium" or splitter.group.depth == 1:
        out["host_ms"] = out["iteration_ms"] - out.get(
            "jitted_ms", out.get("rollout_ms", 0) + out.get("update_ms", 0))
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def processes(cmds: list[list[str]], env: dict | None = None) -> tuple[float, list[str]]:
    """Run the commands concurrently; (wall s, their outputs)."""
    t0, c0 = time.perf_counter(), cpu_s(resource.RUSAGE_CHILDREN)
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, **(env or {})}) for c in cmds]
    outs = [p.communicate()[0] for p in procs]
    for c, p, o in zip(cmds, procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(c)} failed:\n{o[-2000:]}")
    processes.cpu = cpu_s(resource.RUSAGE_CHILDREN) - c0
    return time.perf_counter() - t0, outs


def ours_gymnasium_processes(algo: str, env_id: str, n: int, steps: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="jaxbench-"))
    cmds = [[sys.executable, "-m", "mcpo", "train", "--algo", algo, "--env-id", env_id,
             "--total-timesteps", str(steps), "--seed", str(s), "--run-dir", str(tmp / str(s)),
             "--no-progress", "--no-tensorboard", "--eval-episodes", "0", "--snapshots", "0",
             "--checkpoint-every", str(10**9)] for s in range(n)]
    la = load()
    wall, _ = processes(cmds, {"MCPO_COMPILE_CACHE": "0"})
    sps = []
    for s in range(n):
        rows = read_metrics(tmp / str(s) / "metrics.csv")[1:]
        sps.append(float(np.median([r["sps"] for r in rows])))
    shutil.rmtree(tmp, ignore_errors=True)
    return {"system": f"ours gymnasium {algo} ({n} processes)", "env_id": env_id, "seeds": n,
            "steady_sps": sum(sps), "wall_s": wall, "incl_start_sps": n * steps / wall,
            "incl_start_cpu_sps": n * steps / processes.cpu, "load": [la, load()]}


def rejax(python: str, env_id: str, seeds: int, steps: int) -> dict:
    la = load()
    wall, (out,) = processes([[python, str(ROOT / "benchmarks" / "rejax_ppo.py"),
                               "--env-id", env_id, "--seeds", str(seeds),
                               "--total-timesteps", str(steps)]])
    r = json.loads(out.strip().splitlines()[-1])
    return {"system": "rejax PPO", "env_id": env_id, "seeds": seeds, "steady_sps": r["sps"],
            "steady_cpu_sps": r["steps"] / r["train_cpu_s"],
            "wall_s": wall, "incl_start_sps": r["steps"] / wall,
            "incl_start_cpu_sps": r["steps"] / processes.cpu,
            "compile_s": r["setup_compile_s"], "load": [la, load()]}


def sb3(env_id: str, n: int, steps: int) -> dict:
    cmds = [[sys.executable, str(ROOT / "benchmarks" / "sb3_ppo.py"), "--env-id", env_id,
             "--total-timesteps", str(steps), "--seed", str(s)] for s in range(n)]
    la = load()
    wall, outs = processes(cmds)
    sps = [float(re.search(r"([\d,]+) steps/s", o).group(1).replace(",", "")) for o in outs]
    return {"system": f"SB3 PPO{f' ({n} processes)' if n > 1 else ''}", "env_id": env_id,
            "seeds": n, "steady_sps": sum(sps), "wall_s": wall,
            "incl_start_sps": n * steps / wall, "incl_start_cpu_sps": n * steps / processes.cpu,
            "load": [la, load()]}


def full_run(python: str | None) -> list[dict]:
    """MCPO 5 seeds x 1M Pendulum through the CLI, cold compile cache (the 180 s target);
    rejax PPO 5 x 1M for reference."""
    out = []
    tmp = Path(tempfile.mkdtemp(prefix="jaxbench-"))
    for algo in ("mcpo", "ppo"):
        la = load()
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, _ = processes([[sys.executable, "-m", "mcpo", "train", "--algo", algo,
                              "--backend", "gymnax", "--seeds", "0,1,2,3,4",
                              "--total-timesteps", "1000000", "--run-dir",
                              str(tmp / algo / "s{seed}"), "--no-progress"]],
                            {"MCPO_COMPILE_CACHE": "0"})
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = [json.loads((tmp / algo / f"s{s}" / "result.json").read_text()) for s in range(5)]
        out.append({"system": f"ours gymnax {algo}, CLI, 5 x 1M", "env_id": "Pendulum-v1",
                    "seeds": 5, "wall_s": wall,
                    "cpu_s": c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime,
                    "steps": sum(r["global_step"] for r in res),
                    "eval_return": [r["eval_return_mean"] for r in res],
                    "final_return": [r["final_return"] for r in res], "load": [la, load()]})
    if python:
        out.append({**rejax(python, "Pendulum-v1", 5, 1_000_000),
                    "system": "rejax PPO, 5 x 1M"})
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def paired_one_seed(python: str, env_id: str, rounds: int, steps: int) -> dict:
    """Our PPO and rejax PPO, one seed each, alternating `rounds` times (ours first, then
    rejax, in every round), so that both see the same machine: the issue-13 ratio without
    the order effects of the sitting above (where rejax runs right after the 5-process rows)."""
    ours_sps, rejax_sps = [], []
    for _ in range(rounds):
        ours_sps.append(ours("ppo", env_id, "gymnax", [0], steps)["steady_sps"])
        rejax_sps.append(rejax(python, env_id, 1, steps)["steady_sps"])
    ratios = [a / b for a, b in zip(ours_sps, rejax_sps)]
    return {"system": f"paired 1-seed PPO, ours / rejax, {rounds} rounds", "env_id": env_id,
            "seeds": 1, "ours_sps": ours_sps, "rejax_sps": rejax_sps, "ratios": ratios,
            "ratio_median": statistics.median(ratios),
            "ratio_of_medians": statistics.median(ours_sps) / statistics.median(rejax_sps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["Pendulum-v1", "CartPole-v1"])
    p.add_argument("--steps", type=int, default=102_400, help="steps per seed (default 50 "
                   "iterations of 2048)")
    p.add_argument("--sb3-steps", type=int, default=20_480)
    p.add_argument("--rejax-python", default=None)
    p.add_argument("--no-sb3", action="store_true")
    p.add_argument("--full-run", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--paired-rounds", type=int, default=0, metavar="N",
                   help="only the paired 1-seed PPO comparison with rejax (needs "
                   "--rejax-python): N alternating rounds per env")
    a = p.parse_args()
    if a.paired_rounds and not a.rejax_python:
        p.error("--paired-rounds needs --rejax-python")
    # One CPU device per core, as `mcpo train` gives a group (mcpo.xla_threads.split_devices;
    # a one-seed run stays on one device).
    xla_threads.split_devices(xla_threads.usable_cores())
    rows = []

    def add(r):
        rows.append(r)
        print(json.dumps(r), flush=True)

    if a.paired_rounds:
        for env_id in a.envs:
            add(paired_one_seed(a.rejax_python, env_id, a.paired_rounds, a.steps))
    else:
        for env_id in a.envs:
            for algo in ("ppo", "mcpo"):
                add(ours(algo, env_id, "gymnax", [0], a.steps))
                add(ours(algo, env_id, "gymnax", [0, 1, 2, 3, 4], a.steps))
                add(ours(algo, env_id, "gymnasium", [0], a.steps))
                add(ours_gymnasium_processes(algo, env_id, 5, a.steps))
            if a.rejax_python:
                add(rejax(a.rejax_python, env_id, 1, a.steps))
                add(rejax(a.rejax_python, env_id, 5, a.steps))
            if not a.no_sb3:
                add(sb3(env_id, 1, a.sb3_steps))
                add(sb3(env_id, 5, a.sb3_steps))
        if a.full_run:
            for r in full_run(a.rejax_python):
                add(r)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
