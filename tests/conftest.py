"""Shared test fixtures and CI-sized training presets."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mcpo
from mcpo.logger import read_metrics
from mcpo.watchdog import ENV_LOG

# A hang the watchdog stops (exit 75) is recorded here too, with every thread's stack: pytest's
# capture loses the message on stderr when the process exits under it (.ci/run prints this).
if not os.environ.get(ENV_LOG):
    _cache = Path(__file__).resolve().parents[1] / ".pytest_cache"
    _cache.mkdir(exist_ok=True)
    os.environ[ENV_LOG] = str(_cache / "mcpo-hangs.log")

# CI-sized budgets (a few seconds to ~20 s per run on 2 CPU cores). Thresholds and why:
# * CartPole-v1: a uniform random policy scores ~22; 195 is the classic "solved" bar (v0).
#   "Solved" within 50k steps: the deterministic evaluation at the end averages >= 195, or
#   the mean of the last 100 training episodes reached 195 at some iteration. (The end point
#   alone is fragile: CartPole policies oscillate, and XLA's numerics differ between CPU
#   generations, so one seed's final policy can sit at ~150 on one machine and 500 on
#   another.) A uniform random policy never gets near either bar.
# * Pendulum-v1: a random policy scores about -1200 to -1400 per episode. "Improves" means the
#   mean episode return of the last 5 iterations beats the first 5 iterations' by >= 250
#   (at 100k steps PPO reaches about -350 and MCPO about -850 with these settings, seed 1).
CARTPOLE_QUICK = dict(env_id="CartPole-v1", total_timesteps=50_000, num_envs=4, num_steps=128,
                      update_epochs=4, num_minibatches=4)
PENDULUM_QUICK = dict(env_id="Pendulum-v1", total_timesteps=100_000, num_envs=4,
                      num_steps=256, num_minibatches=16)
CARTPOLE_SOLVED = 195.0
PENDULUM_MIN_GAIN = 250.0


# jax primitives that jaxlib's CPU runtime computes with LAPACK kernels (FFI custom calls)
LAPACK_PRIMITIVES = {"qr", "householder_product", "geqrf", "geqp3", "eigh", "eig", "svd",
                     "cholesky", "lu", "triangular_solve", "schur", "hessenberg", "tridiagonal",
                     "tridiagonal_solve"}


def lapack_operands(jaxpr) -> list[tuple[str, tuple]]:
    """(primitive, operand shape) of every LAPACK-backed primitive in a (closed) jaxpr and in
    the jaxprs nested in its equations (jit, scan, cond, custom_vmap ...)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in LAPACK_PRIMITIVES:
            found.append((eqn.primitive.name, tuple(eqn.invars[0].aval.shape)))
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    found += lapack_operands(sub)
    return found


def vmapped_lapack_calls(loop, keys) -> list[tuple[str, tuple]]:
    """`lapack_operands` of a training Loop's init and iteration, vmapped over `keys` (one
    per seed), as a group runs them."""
    import jax

    state = jax.eval_shape(jax.vmap(loop.init), keys)
    return (lapack_operands(jax.make_jaxpr(jax.vmap(loop.init))(keys))
            + lapack_operands(jax.make_jaxpr(jax.vmap(loop.iteration))(state)))


def quick_train(run_dir, algo: str, preset: dict, algo_config=None, **overrides):
    """Train with a preset (seed 1 unless overridden); returns (RunResult, metrics rows)."""
    cfg = mcpo.TrainConfig(algo=algo, run_dir=str(run_dir), progress=False, tensorboard=False,
                           eval_episodes=10, algo_config=algo_config,
                           **{"seed": 1, **preset, **overrides})
    result = mcpo.train(cfg)
    return result, read_metrics(f"{run_dir}/metrics.csv")


def cartpole_solved(result, rows) -> tuple[bool, str]:
    """(solved?, what was reached) by the criterion above."""
    best = max(r["recent_return"] for r in rows)
    why = f"eval {result.eval_return_mean:.1f}, best last-100 training mean {best:.1f}"
    return result.eval_return_mean >= CARTPOLE_SOLVED or best >= CARTPOLE_SOLVED, why


def iteration_returns(rows) -> list[float]:
    return [r["ep_return_mean"] for r in rows if not math.isnan(r["ep_return_mean"])]


def pendulum_gain(rows) -> tuple[float, float, float]:
    """(first-5-iterations mean return, last-5 mean return, gain)."""
    rets = iteration_returns(rows)
    first, last = float(np.mean(rets[:5])), float(np.mean(rets[-5:]))
    return first, last, last - first


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"


# ----------------------------------------------------------------------------------------------
# A tiny sweep (tests/test_sweep.py, tests/test_report.py): 2 methods x 2 seeds on Pendulum
# plus one run that fails (NaN rewards at step 300, after its first checkpoint).
# ----------------------------------------------------------------------------------------------
TINY_SPEC = """\
name: tiny
imports: [sweep_envs]
seeds: [1, 2]
flags:
  total_timesteps: 3072
  num_steps: 256
  num_minibatches: 4
  update_epochs: 2
  eval_episodes: 2
  snapshots: 0
  checkpoint_every: 1
  tensorboard: false
envs:
  Pendulum-v1: {}
  mcpo_test/NanReward-v0: {total_timesteps: 1024}
methods:
  PPO:
    algo: ppo
    envs: [Pendulum-v1]
  MCPO:
    algo: mcpo
    envs: [Pendulum-v1]
    memory_size: 4
  broken:
    algo: ppo
    envs: [mcpo_test/NanReward-v0]
    seeds: [1]
"""
TESTS_DIR = Path(__file__).resolve().parent


def sweep_env() -> dict:
    """The environment of a sweep subprocess: the tests' modules importable (sweep_envs)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).strip(
        os.pathsep)
    return env


def sweep_cmd(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mcpo", "sweep", str(spec), "--out", str(out),
            "--workers", "2", *extra]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """The local sweep, killed (SIGKILL, the whole process group) once one run has finished
    and another is mid-way with a checkpoint, then re-run to the end. Returns what a test
    needs to check it."""
    root = tmp_path_factory.mktemp("sweep")
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    out = root / "local"
    p = subprocess.Popen(sweep_cmd(spec, out), env=sweep_env(), start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    before = None
    while time.time() < deadline and p.poll() is None:
        runs = [d for d in out.glob("Pendulum-v1__*") if d.is_dir()]
        done = [d for d in runs if (d / "result.json").is_file()]
        mid = [d for d in runs if (d / "checkpoints" / "latest.ckpt").is_file()
               and not (d / "result.json").is_file()]
        if done and mid:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            before = {d.name: (d / "result.json").read_bytes() for d in runs
                      if (d / "result.json").is_file()}
            mid_names = [d.name for d in mid if not (d / "result.json").is_file()]
            break
        time.sleep(0.05)
    if before is None:
        p.kill()
        log = p.stdout.read().decode(errors="replace")
        pytest.fail(f"the sweep never had a finished and a mid-way run at once:\n{log}")
    rerun = subprocess.run(sweep_cmd(spec, out), env=sweep_env(), capture_output=True,
                           text=True, timeout=600)
    return {"spec": spec, "out": out, "before": before, "mid": mid_names, "rerun": rerun}
