"""Command line: `mcpo train | eval | bench`.

Flags are generated from the config dataclasses (`mcpo.config.TrainConfig` and each algorithm's
config), so `--help` always shows every hyperparameter with its default and meaning.
Exit codes: 0 done; 2 bad input (nothing written); 3 NaN/Inf stopped the run;
128 + signal number when SIGINT/SIGTERM stopped it (after writing a checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap

from mcpo.config import ConfigError, TrainConfig, flag_name

EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3


def _int(s: str) -> int:
    """Integers, also written as 1e6 or 1_000_000."""
    try:
        return int(s.replace("_", ""))
    except ValueError:
        f = float(s)
        if not f.is_integer():
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        return int(f)


_TYPES = {"int": _int, "float": float, "str": str}


def _add_field(group, f, default_text: str | None, help_text: str | None = None) -> None:
    name = flag_name(f.name)
    help_ = help_text or f"{f.metadata['help']} (default: {default_text})"
    if f.type == "bool":
        group.add_argument(name, action=argparse.BooleanOptionalAction, dest=f.name,
                           default=argparse.SUPPRESS, help=help_)
    elif f.type.startswith("tuple"):
        group.add_argument(name, type=_int, nargs="+", dest=f.name, metavar="N",
                           default=argparse.SUPPRESS, help=help_)
    else:
        group.add_argument(name, type=_TYPES[f.type], dest=f.name, metavar=f.name.upper(),
                           default=argparse.SUPPRESS, help=help_)


def _show(v) -> str:
    if isinstance(v, tuple):
        return " ".join(map(str, v))
    return repr(v) if v == "" else str(v)


def _algo_fields() -> dict[str, list[str]]:
    """flag field name -> algorithms that have it."""
    from mcpo.algos import ALGOS

    owners: dict[str, list[str]] = {}
    for name, spec in ALGOS.items():
        for f in dataclasses.fields(spec.config_cls):
            if f.metadata.get("cli", True):
                owners.setdefault(f.name, []).append(name)
    return owners


def build_parser() -> argparse.ArgumentParser:
    from mcpo.algos import ALGOS

    p = argparse.ArgumentParser(
        prog="mcpo", description="Memory-Constrained Policy Optimization and on-policy "
        "trust-region baselines (JAX).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,eval,bench}")

    algos = "\n".join(f"  {n:<12} {s.summary}" for n, s in ALGOS.items())
    t = sub.add_parser(
        "train", help="train one run (or --resume one)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an agent. Every hyperparameter has a flag; defaults follow "
        "DESIGN.md §3 (PPO backbone: T=2048, K=10, 32 minibatches, Adam 3e-4).\n\n"
        f"algorithms:\n{algos}",
        epilog=textwrap.dedent("""\
            examples:
              mcpo train                                   # MCPO on Pendulum-v1, 200k steps
              mcpo train --algo ppo --env-id CartPole-v1 --total-timesteps 1e5
              mcpo train --algo mcpo --memory-size 40 --run-dir runs/m40
              mcpo train --resume runs/m40                 # continue after a stop or kill
            """))
    run = t.add_argument_group("run control")
    run.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the run in DIR from its latest checkpoint (its config is "
                     "reused; only --total-timesteps may be changed, to extend it)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing run directory (only an mcpo run dir)")
    common = t.add_argument_group("common hyperparameters")
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True):
            _add_field(common, f, _show(f.default))
    # Algorithm flags: one flag per field name, shared by the algorithms that have it.
    owners: dict[str, dict[str, dataclasses.Field]] = {}
    for name, spec in ALGOS.items():
        for f in dataclasses.fields(spec.config_cls):
            if f.metadata.get("cli", True):
                owners.setdefault(f.name, {})[name] = f
    groups = {}
    for field_name, per_algo in owners.items():
        algo, f = next(iter(per_algo.items()))
        if algo not in groups:
            groups[algo] = t.add_argument_group(f"{algo} hyperparameters")
        helps = {a: g.metadata["help"] for a, g in per_algo.items()}
        defaults = {a: _show(g.default) for a, g in per_algo.items()}
        if len(set(helps.values())) == 1 and len(set(defaults.values())) == 1:
            text = f"{_show(f.default)}; used by {', '.join(per_algo)}"
            _add_field(groups[algo], f, text)
        else:  # same flag, different meaning or default per algorithm: say each
            by_meaning: dict[tuple[str, str], list[str]] = {}
            for a in per_algo:
                by_meaning.setdefault((helps[a], defaults[a]), []).append(a)
            text = "; ".join(f"{', '.join(algos)}: {h} (default {d})"
                             for (h, d), algos in by_meaning.items())
            _add_field(groups[algo], f, None, help_text=text)

    e = sub.add_parser("eval", help="evaluate a trained run",
                       description="Run episodes with a trained agent; prints mean +- std.")
    e.add_argument("run_dir", metavar="DIR")
    e.add_argument("--episodes", type=_int, default=10, help="episodes to run (default: 10)")
    e.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=False,
                   help="act with the distribution's mean/argmax instead of sampling "
                   "(default: sample)")
    e.add_argument("--video", metavar="FILE", default=None,
                   help="record the episodes to FILE (.gif, or .mp4 with imageio-ffmpeg)")
    e.add_argument("--checkpoint", default=None,
                   help="checkpoint file in DIR/checkpoints (default: latest.ckpt)")
    e.add_argument("--seed", type=_int, default=0, help="seed of the first episode (default: 0)")

    b = sub.add_parser("bench", help="throughput benchmark (see benchmarks/RESULTS.md)",
                       description="Measure training steps/s of our PPO and MCPO, the bare "
                       "vector env, and stable-baselines3 PPO when installed, side by side.")
    from mcpo.bench import add_arguments

    add_arguments(b)
    return p


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    from mcpo.algos import ALGOS

    given = {k: v for k, v in vars(ns).items()
             if k not in ("command", "resume", "overwrite")}
    common_names = {f.name for f in dataclasses.fields(TrainConfig)}
    common = {k: v for k, v in given.items() if k in common_names}
    algo_given = {k: v for k, v in given.items() if k not in common_names}
    algo = common.get("algo", TrainConfig.algo)
    spec = ALGOS.get(algo)
    if spec is None:
        TrainConfig(algo=algo).validate()  # raises with suggestions
    allowed = {f.name for f in dataclasses.fields(spec.config_cls)
               if f.metadata.get("cli", True)}
    owners = _algo_fields()
    wrong = [k for k in algo_given if k not in allowed]
    if wrong:
        k = wrong[0]
        raise ConfigError(f"{flag_name(k)} does not apply to --algo {algo}; it is a "
                          f"hyperparameter of {', '.join(owners[k])}.")
    return TrainConfig(**common, algo_config=spec.config_cls(**algo_given))


def cmd_train(ns) -> int:
    from mcpo.trainer import NonFiniteError, TrainingInterrupted, resume, train

    try:
        if ns.resume:
            extra = sorted(k for k in vars(ns) if k not in
                           ("command", "resume", "overwrite", "total_timesteps", "progress"))
            if extra or ns.overwrite:
                bad = [flag_name(k) for k in extra] + (["--overwrite"] if ns.overwrite else [])
                raise ConfigError(f"--resume reuses the run's saved config; {', '.join(bad)} "
                                  f"cannot be changed (only --total-timesteps, to extend it).")
            result = resume(ns.resume, getattr(ns, "total_timesteps", None))
        else:
            result = train(config_from_args(ns), overwrite=ns.overwrite)
    except ConfigError as e:
        print(f"mcpo: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteError as e:
        print(f"mcpo: error: {e}", file=sys.stderr)
        return EXIT_NONFINITE
    except TrainingInterrupted as e:
        print(f"mcpo: {e}", file=sys.stderr)
        return 128 + e.signum
    print(result.summary())
    return 0


def cmd_eval(ns) -> int:
    import numpy as np

    from mcpo.agent import evaluate, load

    try:
        if ns.episodes < 1:
            raise ConfigError(f"--episodes must be >= 1; got {ns.episodes}.")
        agent = load(ns.run_dir, ns.checkpoint)
        rets = evaluate(agent, agent.config.env_id, ns.episodes, seed=ns.seed,
                        deterministic=ns.deterministic, video=ns.video)
    except ConfigError as e:
        print(f"mcpo: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    mode = "deterministic" if ns.deterministic else "stochastic"
    print(f"{agent.config.env_id}: return {np.mean(rets):.2f} +- {np.std(rets):.2f} over "
          f"{len(rets)} episodes ({mode})")
    if ns.video:
        print(f"video written to {ns.video}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.command == "train":
        return cmd_train(ns)
    if ns.command == "eval":
        return cmd_eval(ns)
    from mcpo.bench import run_from_args

    return run_from_args(ns)


if __name__ == "__main__":
    sys.exit(main())
