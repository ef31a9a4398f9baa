"""`mcpo bench`'s report: Markdown tables of steps/s, paired ratios, targets, where the time
goes, and setup/compile costs."""

from __future__ import annotations

from mcpo.bench.results import BenchResult
from mcpo.bench.settings import OURS, RATIOS, EnvSetting, Settings
from mcpo.types import flag_name

# {n}: MCPO's memory size
LABELS = {"env": "env only, random actions", "rollout": "rollout only (our sampling)",
          "ppo": "PPO (ours)", "mcpo": "MCPO (ours, N={n})",
          "mcpo-paper": "MCPO paper-literal (ours, N={n}, --no-attn-slot-features)",
          "sb3-ppo": "SB3 PPO"}
# mcpo.envs.network_kind -> what ours build ({h}: the hidden sizes)
NETWORKS = {"mlp": "{h} tanh actor and critic",
            "minigrid": "one-hot grid, {h} tanh actor and critic",
            "nature-cnn": "Nature CNN, shared trunk"}


def _label(system: str, s: Settings) -> str:
    return LABELS[system].format(n=s.memory_size)


def _num(st: dict | None, fmt: str = "{:,.0f}", suffix: str = "") -> str:
    if not st:
        return "-"
    one = lambda v: fmt.format(v) + suffix  # noqa: E731
    if st["n"] == 1:
        return one(st["median"])
    return f"{one(st['median'])} [{fmt.format(st['min'])}-{fmt.format(st['max'])}]"


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A Markdown table; the first `left` columns left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(  # noqa: E731
        c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 2)) if i < left else ("-" * (w + 1) + ":")
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def _flags_text(s: Settings) -> str:
    given = ", ".join(f"{flag_name(k)} {v}" for k, v in s.size_flags().items())
    return f"; {given} given, for every env" if given else ""


def _targets_text(e: EnvSetting, s: Settings) -> str:
    return ", ".join(f"{_label(x, s)} >= {t:g}x" for x, t in e.targets.items()) or "none"


def _settings_table(res: BenchResult, envs: list[str]) -> str:
    """Per env: the preset and sizes every system used, our network, the targets."""
    s, rows = res.settings, []
    for env_id in envs:
        e = res.envs[env_id]
        norm = [x for x, on in (("observations", e.norm_obs), ("rewards", e.norm_reward)) if on]
        rows.append([env_id, e.preset or "none", f"{e.num_envs} x {e.num_steps}",
                     f"{e.update_epochs} x {e.num_minibatches} of {e.minibatch_size}",
                     NETWORKS.get(e.network, e.network).format(
                         h="x".join(map(str, e.hidden_sizes))),
                     " and ".join(norm) or "none", _targets_text(e, s)])
    return _table(["env", "preset", "envs x steps", "epochs x minibatches", "our network",
                   "normalized", "target vs SB3 PPO"], rows, left=7)


def format_report(res: BenchResult) -> str:
    s, summ = res.settings, res.summary()
    envs = [e for e in res.envs if any(x.env_id == e for x in res.samples)]
    systems = [x for x in s.systems if any(y.system == x for y in res.samples)]
    m = res.machine
    rounds_done = {e: len({x.round for x in res.samples if x.env_id == e}) for e in envs}
    learners = [x for x in systems if x in OURS or x == "sb3-ppo"]
    out = [
        f"mcpo bench, {res.started}, {res.seconds:.0f} s",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable of {m['cpus']} CPUs, load average "
        f"(1, 5, 15 min) {m.get('loadavg_start')} at start, {m.get('loadavg_end')} at end",
        "versions: " + ", ".join(f"{k} {val}" for k, val in m["versions"].items() if val),
        f"setting: ours on the {s.backend} backend (SB3 on Gymnasium's envs); each env with "
        f"its family's training preset (what `mcpo train --env-id ENV` uses), SB3 PPO set up "
        f"the same way (mcpo/bench/sb3.py){_flags_text(s)}:",
        "",
        _settings_table(res, envs),
        "",
        f"method: per env, each system built once and its first iteration (JIT compile) left "
        f"out; then {', '.join(f'{n} rounds on {e}' for e, n in rounds_done.items())}, each "
        f"running every system in turn (rotating order) for {s.iterations} iteration(s) of the "
        f"env's envs x steps ({s.sb3_iterations} for SB3). Figures: median [min-max] over "
        f"rounds; ratios paired within a round.",
        "",
        "Steps per second, steady state",
        "",
        _table(["system"] + envs,
               [[_label(x, s)] + [_num(summ["sps"].get(f"{x}|{e}")) for e in envs]
                for x in systems]),
        "",
    ]
    ratio_rows = []
    for num, den in RATIOS:
        cells = [summ["ratios"].get(f"{num}/{den}|{e}") for e in envs]
        if any(cells):
            ratio_rows.append([f"{_label(num, s)} / {_label(den, s)}"]
                              + [_num(c, "{:.2f}", "x") for c in cells])
    if ratio_rows:
        out += ["Ratios (steady state, paired within each round)", "",
                _table(["ratio"] + envs, ratio_rows), ""]
    target_rows = []
    for e in envs:
        for name, target in res.envs[e].targets.items():
            t = summ["targets"].get(f"{name}|{e}")
            if t:
                target_rows.append([f"{_label(name, s)} >= {target:g}x SB3 PPO", e,
                                    _num(summ["ratios"][f"{name}/sb3-ppo|{e}"], "{:.2f}",
                                         "x"),
                                    f"{t['rounds_met']}/{t['rounds']}",
                                    "met" if t["met"] else "NOT met"])
    if target_rows:
        untargeted = [e for e in envs if not res.envs[e].targets]
        out += ["Targets (docs/design.md §7, per env family; the verdict is on the median "
                "ratio)" + (f"; no target on {', '.join(untargeted)}" if untargeted else ""),
                "", _table(["target", "env", "ratio", "rounds meeting it", "verdict"],
                           target_rows, left=2), ""]
    split_rows = []
    for x in systems:
        for e in envs:
            sp = summ["split"].get(f"{x}|{e}")
            if not sp:
                continue
            env = res.envs[e]
            it, ro, up, ot = (sp["iteration_mean"], sp["rollout_mean"], sp["update_mean"],
                              sp["other_mean"])
            pct = lambda a: f"{1e3 * a:,.1f} ({100 * a / it:.0f}%)"  # noqa: E731
            learns = x in learners
            split_rows.append([
                _label(x, s), e, f"{1e3 * it:,.1f}", pct(ro), pct(up) if learns else "-",
                pct(ot) if x in OURS else "-", f"{1e6 * ro / env.batch_size:,.1f}",
                (f"{1e3 * up / (env.update_epochs * env.num_minibatches):.3f}"
                 if learns else "-")])
    out += ["Where the time goes (steady state, per iteration; medians over rounds). "
            "rollout: collecting the steps (ours: policy sampling in NumPy, normalization, "
            "NaN check); update: GAE + all epochs and minibatches (ours: one jitted call; "
            "SB3: train() and its logging); other: our logging, NaN checks of the learner "
            "state, checkpoints.", "",
            _table(["system", "env", "iteration ms", "rollout ms", "update ms", "other ms",
                    "rollout us/step", "update ms/minibatch"], split_rows, left=2), ""]
    setup_rows = []
    for x in learners:
        for e in envs:
            st = summ["setup"].get(f"{x}|{e}")
            if st:
                setup_rows.append([_label(x, s), e, f"{st['setup_s']:.2f}",
                                   f"{st['first_iteration_s']:.2f}",
                                   f"{st['sps_with_setup']:,.0f}", f"{st['steps']:,}"])
    if setup_rows:
        cache = ("persistent XLA compile cache on" if s.compile_cache
                 else "cold compile, no persistent cache")
        out += [f"Setup and first iteration (ours: JIT compile, {cache}), one build per system "
                f"and env; steps/s over the whole measured run with them included", "",
                _table(["system", "env", "setup s", "1st iteration s",
                        "steps/s incl. setup", "over steps"], setup_rows, left=2)]
    if res.notes:
        out += ["", "Notes:"] + [f"* {n}" for n in res.notes]
    return "\n".join(out)
