"""`mcpo sweep`: the command line of the experiment layer (parsing here, work in
mcpo.experiments.spec / .sweep)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections import Counter
from pathlib import Path

from mcpo.xla_threads import usable_cores
from mcpo.experiments.spec import parse_spec, read_spec_source
from mcpo.experiments.sweep import BACKENDS, SweepInterrupted, run_state, run_sweep
from mcpo.presets import experiments as experiment_presets
from mcpo.tracking import check_available as check_wandb
from mcpo.types import ConfigError

EXIT_FAILED_RUNS = 1
EXIT_INTERRUPTED = 130


def add_parser(sub, int_type, float_type) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "sweep", help="run many (algorithm, env, seed, hyperparameter) runs: a spec or a "
        "preset of the paper's experiments",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Run every run of a sweep spec (YAML: envs x methods x their grids x seeds; "
            "`mcpo sweep --preset table1 --print-spec` shows one, mcpo/experiments/spec.py "
            "documents the format) into DIR, one run directory per run. Re-running the same "
            "command skips finished runs and resumes unfinished ones from their checkpoints; "
            "a failing run is recorded (DIR/sweep.json, DIR/<run>/error.txt) and the others "
            "go on. The spec is checked completely before anything starts.", 92)
        + "\n\nexperiment presets (the paper's): " + ", ".join(experiment_presets.names()),
        epilog=textwrap.dedent("""\
            examples:
              mcpo sweep --preset table1 --env Pendulum-v1 --out sweeps/t1 --dry-run
              mcpo sweep --preset table1 --env Pendulum-v1 --out sweeps/t1 --scale 0.05
              mcpo sweep my_spec.yaml --out sweeps/mine --workers 2
              mcpo sweep my_spec.yaml --out /shared/sweeps/mine --backend ray --address auto
              mcpo report sweeps/t1                      # tables and figures

            exit codes: 0 every run finished, 1 some runs failed (see DIR/sweep.json),
              2 bad spec or flag (nothing started), 4 another sweep holds DIR,
              130 interrupted (re-run the command to continue)
            """))
    s.add_argument("spec", nargs="?", metavar="SPEC.yaml", help="the sweep spec file")
    s.add_argument("--preset", metavar="NAME", help="one of the paper's experiments instead "
                   f"of a file: {', '.join(experiment_presets.names())}")
    s.add_argument("--out", metavar="DIR", help="the sweep directory (required, except with "
                   "--print-spec)")
    s.add_argument("--scale", type=float_type, default=1.0, metavar="F",
                   help="multiply every run's budget (total timesteps) by F for a quick look "
                   "(default: 1, the spec's)")
    s.add_argument("--seeds", type=int_type, nargs="+", metavar="N",
                   help="these seeds instead of the spec's")
    s.add_argument("--env", action="append", metavar="ENV_ID",
                   help="only this env of the spec (repeatable)")
    s.add_argument("--method", action="append", metavar="LABEL",
                   help="only this method (its label in the spec; repeatable)")
    s.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: a pool of worker processes (default); ray: Ray tasks (the "
                   "ray extra)")
    s.add_argument("--workers", type=int_type, metavar="N",
                   help=f"runs at a time (default: the usable cores, {usable_cores()} here; "
                   "with --address, the cluster's CPUs)")
    s.add_argument("--no-pin", dest="pin", action="store_false",
                   help="local backend: do not pin the workers to CPUs (by default, with one "
                   "worker per usable CPU, worker i runs on CPU i: ~1.3x faster runs on 2 cores, "
                   "same numbers)")
    s.add_argument("--address", metavar="ADDR",
                   help="with --backend ray: join this Ray cluster ('auto' finds a local one)"
                   "; default: start a local cluster for the sweep")
    s.add_argument("--dry-run", action="store_true",
                   help="list the runs and the env steps they need, and exit")
    s.add_argument("--print-spec", action="store_true",
                   help="print the spec's YAML (e.g. a preset's, to copy) and exit")
    s.add_argument("--track", action="store_true",
                   help="log every run to Weights & Biases (the wandb extra), grouped by the "
                   "sweep's name; WANDB_MODE=offline works without a network")
    s.add_argument("--wandb-project", default="mcpo", metavar="NAME",
                   help="W&B project for --track (default: mcpo)")
    return s


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def dry_run_listing(spec, out: Path | None) -> str:
    """Totals per (env, method) and every run in order, with its state in `out`."""
    lines = [f"sweep {spec.name} ({spec.source}): {len(spec.runs)} runs, "
             f"{spec.total_timesteps:,} env steps"]
    if spec.description:
        lines += textwrap.wrap(spec.description, 92, initial_indent="  ",
                               subsequent_indent="  ")
    groups: dict[tuple[str, str], list] = {}
    for r in spec.runs:
        groups.setdefault((r.env_id, r.label), []).append(r)
    rows = [["env", "method", "settings", "seeds", "runs", "steps/run", "env steps"]]
    for (env, label), rs in groups.items():
        budgets = sorted({r.total_timesteps for r in rs})
        per = f"{budgets[0]:,}" if len(budgets) == 1 else f"{budgets[0]:,}-{budgets[-1]:,}"
        rows.append([env, label, str(len({r.setting for r in rs})),
                     str(len({r.seed for r in rs})), str(len(rs)), per,
                     f"{sum(r.total_timesteps for r in rs):,}"])
    rows.append(["total", "", "", "", str(len(spec.runs)), "", f"{spec.total_timesteps:,}"])
    lines += ["", *_table(rows, {2, 3, 4, 5, 6})]
    states = Counter()
    run_rows = [["#", "run directory", "setting", "seed", "steps", "state"]]
    for i, r in enumerate(spec.runs, 1):
        st = run_state(r) if out is not None else "new"
        states[st] += 1
        run_rows.append([str(i), r.name, r.setting, str(r.seed), f"{r.total_timesteps:,}", st])
    lines += ["", f"runs, in the order they start (under {out}):" if out else "runs:",
              *_table(run_rows, {0, 3, 4})]
    lines.append("")
    lines.append("state: " + ", ".join(f"{n} {k}" for k, n in states.items()))
    for env, why in spec.env_problems.items():
        lines.append(f"warning: {env} cannot run here: {why}")
    return "\n".join(lines)


def run(ns: argparse.Namespace, argv: list[str]) -> int:
    text, source = read_spec_source(ns.spec, ns.preset)
    if ns.print_spec:
        print(text, end="" if text.endswith("\n") else "\n")
        return 0
    if not ns.out:
        raise ConfigError("mcpo sweep needs --out DIR, the sweep directory its runs go to.")
    out = Path(ns.out).resolve()
    if ns.address and ns.backend != "ray":
        raise ConfigError("--address is for --backend ray (the cluster to join).")
    spec = parse_spec(text, source, out, scale=ns.scale, seeds=ns.seeds, envs=ns.env,
                      methods=ns.method, check_envs=not ns.dry_run)
    if ns.dry_run:
        print(dry_run_listing(spec, out if out.is_dir() else None))
        return 0
    track = None
    if ns.track:
        check_wandb()
        track = {"project": ns.wandb_project, "group": spec.name}
    try:
        summary = run_sweep(spec, out, backend=ns.backend, workers=ns.workers,
                            address=ns.address, track=track, command=["mcpo", *argv],
                            scale=ns.scale, pin=ns.pin)
    except SweepInterrupted as e:
        print(f"interrupted: {e.summary.line()}\nRe-run the same command to continue.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary.line())
    if summary.failed:
        print(f"{summary.failed} run(s) failed (errors in {out / 'sweep.json'} and "
              f"<run>/error.txt):", file=sys.stderr)
        for name, err in summary.failures.items():
            first = (err or "").strip().splitlines()
            print(f"  {name}: {first[0] if first else 'no error message'}", file=sys.stderr)
        return EXIT_FAILED_RUNS
    return 0
