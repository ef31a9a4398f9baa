"""Command line: `mcpo train | eval | sweep | report | plot | bench`.

Flags are generated from the config dataclasses (`mcpo.config.TrainConfig` and each algorithm's
config), so `--help` always shows every hyperparameter with its default and meaning; the
defaults shown are the effective ones for the `--algo`, `--env-id` and `--preset` given
(`mcpo train --algo a2c --help` shows A2C's).

Exit codes (mcpo.types): 0 done; 2 bad input (nothing written or lost); 3 NaN/Inf stopped the
run; 4 the run directory is in use by another process; 5 an OS fault while writing (disk full,
permissions); 128 + signal number when SIGINT/SIGTERM stopped it (after writing a checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import textwrap

import numpy as np

from mcpo import bench, watchdog, xla_threads
from mcpo.agent import EvalSettings, check_video_path, load, run_episodes
from mcpo.envs import env_family
from mcpo.scores import atari_game, has_human_scores, human_normalized
from mcpo.experiments import cli as sweep_cli
from mcpo.report import cli as report_cli
from mcpo.algos import ALGOS
from mcpo.config import TrainConfig
from mcpo.envs import BACKENDS
from mcpo.presets import AUTO, NONE, PRESETS, effective_defaults, make_config
from mcpo.tracking import WandbCallback
from mcpo.tracking import check_available as check_wandb
from mcpo.api import resume, train
from mcpo.types import EXIT_BAD_INPUT, ConfigError, MCPOError, check_fields, flag_name, \
    parse_float, parse_int

EXIT_INTERRUPTED = 130
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan|infinity)$",
                             re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad flag gets one paragraph (what is wrong, where the help is)
    instead of the whole usage line, which for `mcpo train` is dozens of lines; and that
    `--gamma -1e-3` or `--seed -inf` is a (bad) value, not an unknown option (argparse's own
    pattern for negative numbers has no exponent: "expected one argument")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}. See `{self.prog} --help`."
                                  f"\n")


def _arg_type(parse, what: str):
    def conv(s: str):
        try:
            return parse(s)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    conv.__name__ = what  # argparse names the type in its messages
    return conv


INT = _arg_type(parse_int, "integer")
_SEEDS = _arg_type(lambda s: [parse_int(x) for x in s.split(",") if x.strip()],
                   "comma-separated seeds")
FLOAT = _arg_type(parse_float, "number")
_TYPES = {"int": INT, "float": FLOAT, "str": str}


def _add_field(group, f, help_text: str) -> None:
    name = flag_name(f.name)
    if f.type == "bool":
        group.add_argument(name, action=argparse.BooleanOptionalAction, dest=f.name,
                           default=argparse.SUPPRESS, help=help_text)
    elif f.type.startswith("tuple"):
        group.add_argument(name, type=INT, nargs="+", dest=f.name, metavar="N",
                           default=argparse.SUPPRESS, help=help_text)
    else:
        group.add_argument(name, type=_TYPES[f.type], dest=f.name, metavar=f.name.upper(),
                           default=argparse.SUPPRESS, help=help_text)


def _show(v) -> str:
    if isinstance(v, (tuple, list)):
        return " ".join(map(str, v))
    return repr(v) if v == "" else str(v)


def _target(argv: list[str]) -> tuple[str, str, str]:
    """--algo, --env-id and --preset as given in argv (for the defaults --help shows)."""
    p = Parser(add_help=False)
    p.add_argument("--algo", default=TrainConfig.algo)
    p.add_argument("--env-id", default=TrainConfig.env_id)
    p.add_argument("--preset", default=AUTO)
    ns, _ = p.parse_known_args(argv)
    return ns.algo, ns.env_id, ns.preset


def _add_train(sub, argv: list[str]) -> None:
    algo, env_id, preset = _target(argv)
    try:
        eff = effective_defaults(algo, env_id, preset)
        for_whom = f"the defaults shown are for --algo {algo} on {env_id}"
    except ConfigError:  # an unknown algo/preset: reported when the command runs
        eff, for_whom = {}, "the defaults shown are the base defaults"
    algos = "\n".join(f"  {n:<12} {s.summary}" for n, s in ALGOS.items())
    presets = "\n".join(f"  {p.name:<8} {p.description}" for p in PRESETS.values())
    t = sub.add_parser(
        "train", help="train one run (or --resume one)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an agent. Every hyperparameter has a flag. Defaults come from, "
        "weakest first: the PPO backbone (T=2048, K=10, 32 minibatches, Adam 3e-4), the env "
        "family's preset, the algorithm's own defaults, the preset's values for the "
        f"algorithm; a flag you give wins ({for_whom}).\n\n"
        f"algorithms:\n{algos}\n\npresets (--preset; the env id picks its family's):\n"
        f"{presets}",
        epilog=textwrap.dedent("""\
            examples:
              mcpo train                                   # MCPO on Pendulum-v1, 200k steps
              mcpo train --algo ppo --env-id CartPole-v1 --total-timesteps 1e5
              mcpo train --algo a2c --help                 # A2C's effective defaults
              mcpo train --algo mcpo --memory-size 40 --run-dir runs/m40
              mcpo train --resume runs/m40                 # continue after a stop or kill
              mcpo train --backend gymnax --seeds 0,1,2,3,4 --run-dir runs/g  # 5 seeds, vmapped

            exit codes: 0 done, 2 bad input (nothing written), 3 NaN/Inf stopped the run,
              4 run directory in use by another process, 5 OS fault while writing,
              128+N stopped by signal N after a checkpoint
            """))
    run = t.add_argument_group("run control")
    run.add_argument("--resume", metavar="DIR", nargs="+", default=None,
                     help="continue the run in DIR from its latest checkpoint (its config is "
                     "reused; only --total-timesteps may be changed, and --progress); several "
                     "DIRs of one --backend gymnax group continue together, vmapped")
    run.add_argument("--seeds", metavar="S,S,...", type=_SEEDS, default=None,
                     help="train these seeds together in one process, vmapped (--backend "
                     "gymnax), one run directory per seed: --run-dir DIR makes "
                     "DIR/<env>__<algo>__<seed>, or put {seed} in --run-dir")
    run.add_argument("--resume-from", metavar="SNAPSHOT", default=None,
                     help="with --resume: continue from this checkpoint in DIR/checkpoints "
                     "(e.g. step_000000204800.ckpt) instead of latest.ckpt")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing run directory (only an mcpo run directory, "
                     "and only what a run writes in it)")
    run.add_argument("--track", action="store_true",
                     help="log the run to Weights & Biases (the wandb extra; its files go to "
                     "DIR/wandb; WANDB_MODE=offline works without a network)")
    run.add_argument("--wandb-project", default="mcpo", metavar="NAME",
                     help="W&B project for --track (default: mcpo)")
    run.add_argument("--wandb-group", default=None, metavar="NAME",
                     help="W&B group for --track (default: none)")
    run.add_argument("--preset", default=argparse.SUPPRESS, metavar="NAME",
                     help=f"training preset: {', '.join(PRESETS)}, '{NONE}' (base and "
                     f"algorithm defaults only) or '{AUTO}' (default: the env id's family)")

    def default_text(f) -> str:
        value, source = eff.get(f.name, (f.default, "default"))
        where = "" if source == "default" else f", {source}"
        return f"{_show(value)}{where}"

    common = t.add_argument_group("common hyperparameters")
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True):
            _add_field(common, f, f"{f.metadata['help']} (default: {default_text(f)})")
    # Algorithm flags: one flag per field name, shared by the algorithms that have it.
    owners: dict[str, dict[str, dataclasses.Field]] = {}
    for name, spec in ALGOS.items():
        for f in dataclasses.fields(spec.config_cls):
            if f.metadata.get("cli", True):
                owners.setdefault(f.name, {})[name] = f
    groups = {}
    for field_name, per_algo in owners.items():
        first, f = next(iter(per_algo.items()))
        if first not in groups:
            groups[first] = t.add_argument_group(f"{first} hyperparameters")
        if algo in per_algo:  # the selected algorithm's own meaning and effective default
            g = per_algo[algo]
            others = [a for a in per_algo if a != algo]
            also = f"; also {', '.join(others)}" if others else ""
            text = f"{g.metadata['help']} (default: {default_text(g)}{also})"
        else:
            helps = {a: g.metadata["help"] for a, g in per_algo.items()}
            defaults = {a: _show(g.default) for a, g in per_algo.items()}
            by_meaning: dict[tuple[str, str], list[str]] = {}
            for a in per_algo:
                by_meaning.setdefault((helps[a], defaults[a]), []).append(a)
            text = "; ".join(f"{', '.join(names)}: {h} (default: {d})"
                             for (h, d), names in by_meaning.items())
        _add_field(groups[first], f, text)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    argv = sys.argv[1:] if argv is None else argv
    p = Parser(
        prog="mcpo", description="Memory-Constrained Policy Optimization and on-policy "
        "trust-region baselines (JAX).",
        epilog="exit codes: 0 done, 2 bad input, 3 NaN/Inf stop, 4 run directory busy, "
        "5 OS fault while writing, 128+N signal N")
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{train,eval,sweep,report,plot,bench}")
    _add_train(sub, argv)

    e = sub.add_parser("eval", help="evaluate a trained run",
                       description="Run episodes with a trained agent; prints mean +- std.")
    e.add_argument("run_dir", metavar="DIR")
    for f in dataclasses.fields(EvalSettings):
        _add_field(e, f, f"{f.metadata['help']} (default: {_show(f.default)})")
    e.add_argument("--video", metavar="FILE", default=None,
                   help="record the episodes to FILE (.gif, or .mp4 with imageio-ffmpeg); "
                   "checked before the first episode")
    e.add_argument("--checkpoint", default=None,
                   help="checkpoint file in DIR/checkpoints (default: latest.ckpt)")
    e.add_argument("--backend", default=None, choices=BACKENDS,
                   help="whose env runs the episodes (default: the run's own backend; a "
                   "gymnax run of a classic-control id also runs on its Gymnasium twin)")

    sweep_cli.add_parser(sub, INT, FLOAT)
    report_cli.add_parsers(sub, INT)

    b = sub.add_parser("bench", help="throughput benchmark (see benchmarks/RESULTS.md)",
                       description="Measure training steps/s of our PPO and MCPO, the bare "
                       "vector env, and stable-baselines3 PPO when installed, side by side.")
    bench.add_arguments(b)
    return p


_RUN_CONTROL = ("command", "resume", "resume_from", "overwrite", "preset", "track",
                "wandb_project", "wandb_group", "seeds")


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    given = {k: v for k, v in vars(ns).items() if k not in _RUN_CONTROL}
    algo = given.pop("algo", TrainConfig.algo)
    env_id = given.pop("env_id", TrainConfig.env_id)
    return make_config(algo, env_id, getattr(ns, "preset", AUTO), **given)


def cmd_train(ns, argv: list[str], own_process: bool = False) -> int:
    tracker = None
    if ns.track:
        check_wandb()
        tracker = WandbCallback(project=ns.wandb_project, group=ns.wandb_group)
    callbacks = [tracker] if tracker else []
    xla_threads.requested("mlp")  # a bad $MCPO_XLA_THREADS fails before any work
    xla_threads.devices_requested(1)  # and so does a bad $MCPO_CPU_DEVICES
    xla_threads.PER_RUN_PROCESS = True  # this process trains and exits: the trainer may limit
    watchdog.hang_retries()  # a bad $MCPO_HANG_RETRIES fails before any work
    # A JAX group that hangs is started again in place of this process (mcpo.watchdog) when
    # the process is this command: never in a caller's process (a test suite, a notebook).
    watchdog.RETRY_ARGV = list(argv) if own_process else None
    ok = False
    try:
        if ns.resume:
            extra = sorted(k for k in vars(ns) if k not in
                           ("command", "resume", "resume_from", "overwrite", "total_timesteps",
                            "progress", "track", "wandb_project", "wandb_group", "seeds"))
            if extra or ns.overwrite or ns.seeds is not None:
                bad = ([flag_name(k) for k in extra] + (["--overwrite"] if ns.overwrite else [])
                       + (["--seeds"] if ns.seeds is not None else []))
                raise ConfigError(f"--resume reuses the run's saved config; {', '.join(bad)} "
                                  f"cannot be changed (only --total-timesteps, to change the "
                                  f"budget, --progress and --track).")
            dirs = ns.resume if len(ns.resume) > 1 else ns.resume[0]
            result = resume(dirs, getattr(ns, "total_timesteps", None),
                            resume_from=ns.resume_from, progress=getattr(ns, "progress", None),
                            callbacks=callbacks)
        else:
            if ns.resume_from:
                raise ConfigError("--resume-from needs --resume DIR (the run to continue).")
            if ns.seeds is not None and "seed" in vars(ns):  # vars(ns): the flags given
                raise ConfigError("--seed and --seeds cannot be given together: --seeds lists "
                                  "every seed of the group.")
            result = train(config_from_args(ns), seeds=ns.seeds, overwrite=ns.overwrite,
                           callbacks=callbacks, command=["mcpo", *argv])
        results = result if isinstance(result, list) else [result]
        ok = all(r.complete for r in results)
    finally:
        watchdog.RETRY_ARGV = None
        if tracker is not None:
            tracker.finish(0 if ok else 1)
    print("\n".join(r.summary() for r in results))
    if len(results) > 1:
        wall = max(r.wall_time for r in results)
        steps = sum(r.global_step for r in results)
        print(f"Group: {len(results)} runs, {steps:,} steps in {wall:.1f} s of training, "
              f"{steps / wall if wall > 0 else float('nan'):,.0f} steps/s in total")
    return 0


def cmd_eval(ns) -> int:
    es = EvalSettings(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(EvalSettings)
                         if hasattr(ns, f.name)})
    check_fields(es)
    if ns.video:
        check_video_path(ns.video)  # before loading and running anything
    agent = load(ns.run_dir, ns.checkpoint)
    env_id = agent.config.env_id
    backend = ns.backend or agent.config.backend
    eps = run_episodes(agent, env_id, es.episodes, seed=es.seed,
                       deterministic=es.deterministic, video=ns.video, backend=backend)
    rets = [e.ret for e in eps]
    mode = "deterministic" if es.deterministic else "stochastic"
    extra = ""
    if env_family(env_id) == "minigrid":
        extra = f", success rate {np.mean([e.success for e in eps]):.2f}"
    elif has_human_scores(env_id):
        extra = f", human-normalized {human_normalized(atari_game(env_id), np.mean(rets)):.3f}"
    print(f"{env_id}: return {np.mean(rets):.2f} +- {np.std(rets):.2f} over "
          f"{len(rets)} episodes ({mode}, {backend}){extra}")
    if ns.video:
        print(f"video written to {ns.video}")
    return 0


# What is true when Ctrl-C reaches `main` (train and resume turn their own interrupts into
# TrainingInterrupted/StartupInterrupted, which say more): per command.
_INTERRUPTED = {
    None: "interrupted; nothing was written.",
    "train": "interrupted before training started; nothing was written.",
    "resume": "interrupted before the run was resumed; nothing in it was changed.",
    "eval": "interrupted; nothing was written (the run directory is only read, and a --video "
            "file is written only at the end).",
    "bench": "interrupted; nothing was written (the --json file is written only at the end).",
}


def main(argv: list[str] | None = None) -> int:
    # The process's own command line (the `mcpo` console script, `python -m mcpo`), not a
    # caller's list: only then may a hung training replace the process (`cmd_train`).
    own_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    command = None
    try:
        ns = build_parser(argv).parse_args(argv)
        command = "resume" if getattr(ns, "resume", None) else ns.command
        if ns.command == "train":
            return cmd_train(ns, argv, own_process)
        if ns.command == "eval":
            return cmd_eval(ns)
        if ns.command == "sweep":
            return sweep_cli.run(ns, argv)
        if ns.command == "report":
            return report_cli.run_report(ns, argv)
        if ns.command == "plot":
            return report_cli.run_plot(ns)
        return bench.run_from_args(ns)
    except MCPOError as e:
        label = "error: " if e.exit_code in (EXIT_BAD_INPUT, 3, 4, 5) else ""
        print(f"mcpo: {label}{e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"mcpo: {_INTERRUPTED[command]}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
