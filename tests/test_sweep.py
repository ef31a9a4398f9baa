"""mcpo sweep: spec parsing and checks, presets, dry run, the local pool and Ray backends,
kill and re-run, a failing run, the sweep lock."""

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_SPEC, sweep_cmd, sweep_env
from mcpo.cli import build_parser, config_from_args, main
from mcpo.experiments import parse_spec
from mcpo.types import ConfigError
from mcpo.experiments.progress import Progress
from mcpo.experiments.sweep import group_seeds, job_of, members
from mcpo.experiments.sweepdir import SweepDir
from mcpo.experiments.worker import WORKER_CPU_ENV, run_job, worker_cpus, worker_env
from mcpo.logger import last_metrics_row, read_metrics
from mcpo.rundir import RunDir
from mcpo.presets import experiments as experiment_presets

TIMING = {"wall_time", "sps", "rollout_time", "update_time"}

SPEC = """\
name: unit
seeds: [1, 2]
flags:
  total_timesteps: 1e5
  num_steps: 512
grid:
  learning_rate: [3e-4, 1e-4]
envs:
  Pendulum-v1: {}
  CartPole-v1: {total_timesteps: 50_000}
methods:
  PPO:
    algo: ppo
    grid: {clip_coef: [0.1, 0.2]}
  MCPO:
    algo: mcpo
    envs: [Pendulum-v1]
    memory_size: 5
    learning_rate: 1e-3
"""


def test_grid_expansion_precedence_and_deterministic_names(tmp_path):
    spec = parse_spec(SPEC, "unit.yaml", tmp_path)
    # PPO: 2 envs x 2 lr x 2 clip x 2 seeds; MCPO: 1 env x 2 seeds (its lr overrides the grid)
    assert len(spec.runs) == 16 + 2
    ppo = [r for r in spec.runs if r.algo == "ppo"]
    assert {(r.config.learning_rate, r.config.algo_config.clip_coef) for r in ppo} == \
        {(3e-4, 0.1), (3e-4, 0.2), (1e-4, 0.1), (1e-4, 0.2)}
    assert {r.config.total_timesteps for r in ppo if r.env_id == "CartPole-v1"} == {50_000}
    assert {r.config.total_timesteps for r in ppo if r.env_id == "Pendulum-v1"} == {100_000}
    mc = [r for r in spec.runs if r.algo == "mcpo"]
    assert [(r.seed, r.config.learning_rate, r.config.algo_config.memory_size) for r in mc] \
        == [(1, 1e-3, 5), (2, 1e-3, 5)]
    assert mc[0].setting == "MCPO" and ppo[0].setting.startswith("PPO (learning_rate=")
    # seeds first: every setting of seed 1 before any of seed 2
    assert [r.seed for r in spec.runs] == [1] * 9 + [2] * 9
    # names: deterministic, unique, and they change with any flag
    again = parse_spec(SPEC, "unit.yaml", tmp_path)
    assert [r.name for r in again.runs] == [r.name for r in spec.runs]
    assert len({r.name for r in spec.runs}) == len(spec.runs)
    changed = parse_spec(SPEC.replace("num_steps: 512", "num_steps: 256"), "u.yaml", tmp_path)
    assert not {r.name for r in changed.runs} & {r.name for r in spec.runs}
    assert all(r.config.run_dir == str(tmp_path / r.name) for r in spec.runs)
    assert not any(tmp_path.iterdir())  # parsing writes nothing


def test_scale_filters_and_the_equivalent_train_command(tmp_path):
    spec = parse_spec(SPEC, "unit.yaml", tmp_path, scale=0.05, envs=["Pendulum-v1"],
                      methods=["MCPO"], seeds=[7])
    (run,) = spec.runs
    assert run.config.total_timesteps == 5_000 and run.seed == 7
    tiny = parse_spec(SPEC, "unit.yaml", tmp_path, scale=1e-4, methods=["MCPO"], seeds=[1])
    assert tiny.runs[0].config.total_timesteps == 512  # never below one rollout batch
    cmd = run.train_command()
    assert cmd[:6] == ["mcpo", "train", "--algo", "mcpo", "--env-id", "Pendulum-v1"]
    ns = build_parser(cmd[1:]).parse_args(cmd[1:])
    assert config_from_args(ns) == run.config  # the command makes exactly this run
    with pytest.raises(Exception, match="--method 'SAC' not in"):
        parse_spec(SPEC, "unit.yaml", tmp_path, methods=["SAC"])


BAD_SPECS = [
    # (what is wrong, edit of SPEC, the line the error must name, text it must contain)
    ("unknown flag", ("memory_size: 5", "memory_sise: 5"), 18, "Did you mean 'memory_size'"),
    ("out of bounds", ("clip_coef: [0.1, 0.2]", "clip_coef: [0.1, -0.2]"), 14,
     "--clip-coef must be"),
    ("not a number", ("total_timesteps: 1e5", "total_timesteps: lots"), 4,
     "expected an integer"),
    ("empty grid", ("clip_coef: [0.1, 0.2]", "clip_coef: []"), 14, "is empty"),
    ("foreign flag", ("    algo: ppo\n", "    algo: ppo\n    memory_size: 3\n"), 14,
     "not a setting of ppo"),
    ("duplicate run", ("  MCPO:\n", "  PPO2:\n    algo: ppo\n    grid: {clip_coef: [0.2]}\n"
                                    "  MCPO:\n"), 15, "a second time"),
    ("unknown algo", ("algo: mcpo", "algo: mcpoo"), 16, "Did you mean 'mcpo'"),
    ("not YAML", ("  Pendulum-v1: {}", "  Pendulum-v1: {"), 11, "mapping on line 9"),
    ("reserved", ("    memory_size: 5", "    seed: 3"), 18, "comes from `seeds:`"),
]


@pytest.mark.parametrize("what,edit,line,text", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_a_malformed_spec_is_refused_naming_its_line_and_nothing_starts(tmp_path, capsys,
                                                                        what, edit, line, text):
    spec = tmp_path / "bad.yaml"
    assert edit[0] in SPEC
    spec.write_text(SPEC.replace(edit[0], edit[1], 1))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"line {line}" in err and text in err, err
    assert not out.exists()


def test_every_experiment_preset_parses_with_the_papers_run_counts(tmp_path):
    counts = {n: len(parse_spec(experiment_presets.text(n), f"preset {n}", tmp_path,
                                check_envs=False).runs)
              for n in experiment_presets.names()}
    # table1: 6 methods x 3 values x 3 envs x 5 seeds; navigation: (5 + 3) x 2 x 5;
    # table2: 6 x 6 x 5; table3: 5 x 9 x 5; ablation: 13 settings x 5
    assert counts == {"table1": 270, "navigation": 80, "table2": 180, "table3": 225,
                      "ablation": 65}


def test_dry_run_lists_the_runs_and_their_env_steps(tmp_path, capsys):
    out = tmp_path / "t1"
    assert main(["sweep", "--preset", "table1", "--env", "Pendulum-v1", "--out", str(out),
                 "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "90 runs, 90,000,000 env steps" in text
    assert "Pendulum-v1__mcpo__memory_size=40__s5__" in text
    assert not out.exists()
    assert main(["sweep", "--preset", "table1", "--print-spec"]) == 0
    assert "kl_target: [0.003, 0.01, 0.03]" in capsys.readouterr().out


def test_a_second_sweep_into_a_busy_directory_exits_4_and_changes_nothing(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    with SweepDir(out):
        before = sorted(p.name for p in out.iterdir())
        assert main(["sweep", str(spec), "--out", str(out), "--method", "MCPO"]) == 4
        assert sorted(p.name for p in out.iterdir()) == before
    assert "in use by process" in capsys.readouterr().err


def _comparable(run_dir: Path):
    rows = [{k: v for k, v in r.items() if k not in TIMING} for r in
            read_metrics(run_dir / "metrics.csv")]
    res = json.loads((run_dir / "result.json").read_text())
    return rows, (res["final_return"], res["eval_return_mean"], res["global_step"])


def _same(a, b) -> bool:
    return all((x == y) or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
               for ra, rb in zip(a[0], b[0]) for x, y in zip(ra.values(), rb.values())) \
        and len(a[0]) == len(b[0]) and a[1] == b[1]


@pytest.mark.slow
def test_killed_sweep_rerun_finishes_without_redoing_finished_runs(tiny_sweep):
    out, rerun = tiny_sweep["out"], tiny_sweep["rerun"]
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr  # the broken run failed
    good = sorted(out.glob("Pendulum-v1__*"))
    assert len(good) == 4 and all((d / "result.json").is_file() for d in good)
    for name, content in tiny_sweep["before"].items():  # finished before the kill: kept
        assert (out / name / "result.json").read_bytes() == content
    record = json.loads((out / "sweep.json").read_text())
    assert len(record["invocations"]) == 2
    counts = record["invocations"][1]["counts"]
    assert counts["skipped"] == len(tiny_sweep["before"]) >= 1
    assert counts["resumed"] >= 1 and counts["done"] == 4 - counts["skipped"]
    for name in tiny_sweep["mid"]:  # mid-way at the kill: resumed from its checkpoint
        assert record["runs"][name]["attempts"][-1]["how"] == "resumed"
        its = [int(r["iteration"]) for r in read_metrics(out / name / "metrics.csv")]
        assert its == list(range(1, 13))  # every iteration once, none lost or doubled
    assert f"{counts['resumed']} resumed" in rerun.stdout


@pytest.mark.slow
def test_a_failing_run_is_recorded_and_the_others_complete(tiny_sweep):
    out = tiny_sweep["out"]
    (bad,) = out.glob("mcpo_test-NanReward-v0__*")
    record = json.loads((out / "sweep.json").read_text())["runs"][bad.name]
    assert record["status"] == "failed" and record["attempts"][-1]["exit_code"] == 3
    assert "Non-finite value" in record["error"]
    assert "Non-finite value" in (bad / "error.txt").read_text()
    assert not (bad / "result.json").exists()
    assert "1 failed" in tiny_sweep["rerun"].stdout
    assert bad.name in tiny_sweep["rerun"].stderr


@pytest.mark.slow
def test_ray_backend_gives_the_same_runs_as_the_local_pool(tiny_sweep, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    res = subprocess.run(sweep_cmd(tiny_sweep["spec"], out, "--backend", "ray", "--method",
                                   "PPO", "--method", "MCPO"),
                         env=sweep_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 done" in res.stdout and "ray backend" in res.stdout
    local = tiny_sweep["out"]
    compared = 0
    for d in sorted(out.glob("Pendulum-v1__*")):
        if d.name in tiny_sweep["mid"]:
            continue  # resumed locally: its envs were re-seeded, so it differs by design
        assert _same(_comparable(d), _comparable(local / d.name)), d.name
        compared += 1
    assert compared >= 3
    # and a spec it was given is the one recorded
    assert json.loads((out / "sweep.json").read_text())["invocations"][0]["backend"] == "ray"
    assert TINY_SPEC.splitlines()[0] == "name: tiny"


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_view_redraws_in_place_on_a_terminal_and_prints_lines_otherwise(tmp_path):
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("iteration,global_step,recent_return\r\n"
                                         "1,512,-900.5\r\n2,1024,-850.25\r\n3,15")  # partial
    job = {"name": "r1", "run_dir": str(run_dir), "config": {"total_timesteps": 2048}}
    tty = FakeTTY()
    view = Progress("s", 2, 4096, tty)
    view.started(job)
    first = tty.getvalue()
    assert "0/2 runs over" in first and "1,024/2,048" in first and "-850.25" in first
    view.finished(job, {"status": "done", "how": "resumed", "steps": 1024, "wall_time": 3.0},
                  2048)
    assert "\x1b[2F\x1b[J" in tty.getvalue()[len(first):]  # the 2 lines drawn are replaced
    assert view.counts["done"] == 1 and view.counts["resumed"] == 1
    log = io.StringIO()
    view = Progress("s", 1, 2048, log)
    view.started(job)
    view.finished(job, {"status": "failed", "exit_code": 3, "error": "NaN\nmore"}, 2048)
    assert "failed: r1 (exit code 3): NaN" in log.getvalue() and "\x1b" not in log.getvalue()


def test_last_metrics_row_skips_a_row_being_written(tmp_path):
    f = tmp_path / "metrics.csv"
    assert last_metrics_row(f) is None
    f.write_text("a,b\r\n")
    assert last_metrics_row(f) is None
    f.write_text("a,b\r\n1,2\r\n3,")
    assert last_metrics_row(f) == {"a": 1.0, "b": 2.0}


def test_a_run_directory_holding_another_config_is_left_alone(tmp_path):
    spec = parse_spec(SPEC, "unit.yaml", tmp_path, methods=["MCPO"], seeds=[1])
    run = spec.runs[0]
    other = run.config.replace(learning_rate=5e-4)
    with RunDir.create(Path(run.config.run_dir), other):
        pass
    before = (Path(run.config.run_dir) / "config.json").read_bytes()
    out = run_job(job_of(run, spec, None))
    assert out["status"] == "failed" and "another config (learning_rate" in out["error"]
    assert (Path(run.config.run_dir) / "config.json").read_bytes() == before


GYMNAX_SPEC = """\
name: gx
seeds: [1, 2, 3]
flags:
  backend: gymnax
  total_timesteps: 2048
  num_steps: 512
  num_minibatches: 4
  update_epochs: 2
  eval_episodes: 2
  tensorboard: false
envs:
  CartPole-v1: {}
methods:
  PPO:
    algo: ppo
  MCPO:
    algo: mcpo
    seeds: [4]
"""


@pytest.mark.slow
def test_a_gymnax_sweep_trains_the_seeds_of_a_setting_as_one_group(tmp_path):
    """On a pure-JAX backend the seed axis is one vmapped group job: the runs come out as
    ordinary run directories recorded as one group, with the same metrics as
    `mcpo train --backend gymnax --seeds 1,2,3` (the same compiled program); a re-run skips."""
    pytest.importorskip("gymnax")
    spec = tmp_path / "gx.yaml"
    spec.write_text(GYMNAX_SPEC)
    out = tmp_path / "sweep"
    r = subprocess.run(sweep_cmd(spec, out), env=sweep_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    runs = sorted(d for d in out.iterdir() if (d / "run.json").is_file())
    runs = [d for d in runs if read_config_seed(d) != 4]  # MCPO's lone seed: a single job
    assert len(runs) == 3 and all((d / "result.json").is_file() for d in runs)
    groups = [[e for e in json.loads((d / "run.json").read_text())["history"]
               if e["event"] == "group"] for d in runs]
    assert all(len(g) == 1 and g[0]["seeds"] == [1, 2, 3] for g in groups), groups
    alone = tmp_path / "alone"
    # in a process with the sweep workers' thread settings (XLA flags) and, like a worker, one
    # CPU device (else `mcpo train` splits the 3 seeds over the cores: other programs), so both
    # sides compile (or load from the compile cache) the same program
    r = subprocess.run([sys.executable, "-m", "mcpo", "train", "--backend", "gymnax", "--algo",
                        "ppo", "--env-id", "CartPole-v1", "--seeds", "1,2,3",
                        "--total-timesteps", "2048", "--num-steps", "512",
                        "--num-minibatches", "4", "--update-epochs", "2", "--eval-episodes",
                        "2", "--no-tensorboard", "--no-progress", "--run-dir",
                        str(alone / "s{seed}")],
                       env={**worker_env(sweep_env()), "MCPO_CPU_DEVICES": "1"},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    timing = {"wall_time", "sps", "rollout_time", "update_time"}
    for d, seed in zip(sorted(runs, key=lambda d: read_config_seed(d)), (1, 2, 3)):
        a, b = read_metrics(d / "metrics.csv"), read_metrics(alone / f"s{seed}" / "metrics.csv")
        assert len(a) == len(b) == 4
        for ra, rb in zip(a, b):
            assert same(ra, timing) == same(rb, timing)
    again = subprocess.run(sweep_cmd(spec, out), env=sweep_env(), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0 and "4 skipped" in again.stdout, again.stdout + again.stderr
    # both invocations ran 2 local workers: pinned one per CPU exactly when there are 2 CPUs
    # (the metrics above matched the unpinned `mcpo train` all the same)
    record = json.loads((out / "sweep.json").read_text())
    assert [inv["pinned_cpus"] for inv in record["invocations"]] == [worker_cpus(2)] * 2


def test_workers_are_pinned_one_per_cpu_only_when_they_fill_the_cpus():
    """As many workers as usable CPUs: worker i on CPU i; more or fewer: not pinned. A worker
    process pins itself to the CPU it is given before JAX starts (its XLA pool then has one
    thread); a CPU it may not use leaves it unpinned rather than failing."""
    cpus = sorted(os.sched_getaffinity(0))
    n = len(cpus)
    assert worker_cpus(n) == (cpus if n > 1 else None)
    assert worker_cpus(n + 1) is None and worker_cpus(1) is None
    if n > 2:
        assert worker_cpus(n - 1) is None
    code = ("import json, os; from mcpo.experiments.worker import pin_to_worker_cpu; "
            "pin_to_worker_cpu(); import jax; jax.numpy.zeros(1).block_until_ready(); "
            "print(json.dumps(sorted(os.sched_getaffinity(0))))")
    for cpu, expect in ((cpus[-1], [cpus[-1]]), (10**6, cpus), ("x", cpus)):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, WORKER_CPU_ENV: str(cpu)}, timeout=300)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.splitlines()[-1]) == expect


def test_no_pin_keeps_the_local_workers_unpinned(tmp_path):
    """One worker per CPU is pinned (recorded in sweep.json); `--no-pin` leaves it unpinned."""
    spec = tmp_path / "one.yaml"
    spec.write_text("name: one\nseeds: [1]\nflags: {total_timesteps: 256, num_steps: 128, "
                    "num_minibatches: 2, update_epochs: 1, eval_episodes: 0, "
                    "tensorboard: false}\nenvs: {Pendulum-v1: {}}\nmethods: {PPO: {algo: ppo}}\n")
    n = len(os.sched_getaffinity(0))
    for flags, pinned in (((), worker_cpus(n)), (("--no-pin",), None)):
        out = tmp_path / f"o{len(flags)}"
        cmd = [sys.executable, "-m", "mcpo", "sweep", str(spec), "--out", str(out),
               "--workers", str(n), *flags]
        r = subprocess.run(cmd, env=sweep_env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        record = json.loads((out / "sweep.json").read_text())
        assert record["invocations"][0]["pinned_cpus"] == pinned
    # Ray places its own workers: --no-pin there is refused before anything is written
    out = tmp_path / "ray"
    assert main(["sweep", str(spec), "--out", str(out), "--backend", "ray", "--no-pin"]) == 2
    assert not out.exists()


@pytest.mark.slow
def test_a_group_the_hang_watchdog_stopped_is_run_again_member_by_member(tmp_path):
    """A group job whose worker exits as the hang watchdog makes it (75) is not reported
    failed: its members run again, each alone, and the sweep finishes."""
    pytest.importorskip("gymnax")
    spec = tmp_path / "gx.yaml"
    spec.write_text("imports: [hang_once]\n" + GYMNAX_SPEC.replace("seeds: [1, 2, 3]",
                                                                    "seeds: [1, 2]")
                    .split("  MCPO:")[0])
    out = tmp_path / "sweep"
    env = dict(sweep_env(), HANG_ONCE_MARKER=str(tmp_path / "hung"))
    # one worker: the two seeds stay one group job (two workers would get a seed each)
    r = subprocess.run(sweep_cmd(spec, out, "--workers", "1"), env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "hung").is_file()  # the first attempt did "hang"
    runs = sorted(d for d in out.iterdir() if (d / "run.json").is_file())
    assert len(runs) == 2 and all((d / "result.json").is_file() for d in runs)
    for d in runs:  # trained alone on the retry, not as the group
        events = [e["event"] for e in json.loads((d / "run.json").read_text())["history"]]
        assert "group" not in events
    assert "2 done" in r.stdout and "failed" not in r.stdout.split("runs:")[-1].replace(
        "0 failed", ""), r.stdout


def test_groups_are_cut_into_chunks_of_seeds_so_that_no_worker_idles():
    """A setting's new seeds on a pure-JAX backend are one group job, cut into consecutive
    chunks when there are fewer jobs than workers (biggest chunks first, sizes as even as
    they go); a chunk of one seed is a single job, and each group's command names its seeds."""
    def job(algo, seed, backend="gymnax"):
        cfg = {"backend": backend, "algo": algo, "env_id": "Pendulum-v1", "seed": seed,
               "run_dir": f"{algo}{seed}"}
        return {"name": f"{algo}{seed}", "config": cfg, "imports": [], "track": None,
                "command": ["mcpo", "train", "--algo", algo, "--seed", str(seed)]}

    def shape(out):
        return [[m["config"]["seed"] for m in members(j)] for j in out]

    five = [job("ppo", s) for s in range(1, 6)]
    new = {j["name"] for j in five}
    assert shape(group_seeds(five, new)) == [[1, 2, 3, 4, 5]]
    assert shape(group_seeds(five, new, 1)) == [[1, 2, 3, 4, 5]]
    out = group_seeds(five, new, 2)
    assert shape(out) == [[1, 2, 3], [4, 5]]
    assert [j["name"] for j in out] == ["ppo1", "ppo4"]
    assert out[1]["command"] == ["mcpo", "train", "--algo", "ppo", "--seeds", "4,5"]
    assert shape(group_seeds(five, new, 4)) == [[1, 2], [3], [4], [5]]
    assert all("members" not in j for j in group_seeds(five, new, 8))  # one seed each
    # two settings on 3 workers: the bigger group is cut; jobs that are not new or not
    # vmappable count as workers' jobs too
    three = [job("mcpo", s) for s in (1, 2, 3)]
    both = five + three
    assert shape(group_seeds(both, {j["name"] for j in both}, 3)) == [
        [1, 2, 3], [4, 5], [1, 2, 3]]
    old = job("ppo", 9)  # has a run directory already: resumes alone
    assert shape(group_seeds(five + [old], new, 2)) == [[1, 2, 3, 4, 5], [9]]
    host = [job("ppo", s, backend="gymnasium") for s in (1, 2)]
    assert shape(group_seeds(host, {j["name"] for j in host}, 2)) == [[1], [2]]


def same(row: dict, leave_out: set) -> dict:
    return {k: None if math.isnan(v) else v for k, v in row.items() if k not in leave_out}


def read_config_seed(d: Path) -> int:
    return json.loads((d / "config.json").read_text())["seed"]


def test_env_ids_are_checked_against_the_backend_the_spec_sets(tmp_path):
    """An id of a pure-JAX backend is valid when the spec's flags choose that backend, and
    refused (naming its line and the backend that has it) when they do not."""
    spec = ("name: x\nseeds: 1\nflags:\n  backend: xminigrid\nenvs:\n  MiniGrid-Unlock: "
            "{total_timesteps: 4096}\nmethods:\n  PPO:\n    algo: ppo\n")
    runs = parse_spec(spec, "x.yaml", tmp_path).runs
    assert [(r.config.env_id, r.config.backend) for r in runs] == [("MiniGrid-Unlock",
                                                                     "xminigrid")]
    with pytest.raises(ConfigError, match=r"line 6: .*provided by --backend xminigrid"):
        parse_spec(spec.replace("  backend: xminigrid\n", "  learning_rate: 1e-3\n"),
                   "x.yaml", tmp_path)


@pytest.mark.slow
def test_sigint_stops_a_sweep_started_with_sigint_ignored(tmp_path):
    # `nohup mcpo sweep ... &` (or a script's `&`) starts the sweep with SIGINT ignored; a
    # later `kill -INT` must still stop the sweep (runs checkpointed and marked interrupted,
    # no further run started), not only its workers' current runs.
    import os
    import signal
    import time
    spec = tmp_path / "s.yaml"
    spec.write_text("name: bg\nseeds: [1, 2, 3, 4]\nflags: {total_timesteps: 1e6, "
                    "num_steps: 256, num_minibatches: 4, update_epochs: 1, "
                    "eval_episodes: 0, snapshots: 0, checkpoint_every: 1, "
                    "tensorboard: false}\nenvs: {Pendulum-v1: {}}\n"
                    "methods: {PPO: {algo: ppo}}\n")
    out = tmp_path / "out"
    p = subprocess.Popen(sweep_cmd(spec, out), env=sweep_env(), start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if len(list(out.glob("*/checkpoints/latest.ckpt"))) == 2:
            break
        time.sleep(0.1)
    else:
        p.kill()
        pytest.fail(p.stdout.read().decode(errors="replace"))
    os.killpg(p.pid, signal.SIGINT)
    try:
        log = p.communicate(timeout=150)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the sweep went on after SIGINT")
    assert p.returncode == 130, log
    record = json.loads((out / "sweep.json").read_text())
    statuses = sorted(r["status"] for r in record["runs"].values())
    assert statuses.count("interrupted") == 2, statuses  # the two running, checkpointed
    assert "done" not in statuses and "failed" not in statuses, statuses
    assert len(list(out.glob("Pendulum-v1__*"))) == 2  # seeds 3 and 4 never started


def test_a_worker_dying_before_its_run_reports_the_workers_log(tmp_path, monkeypatch):
    # A worker that cannot even start (an import error, say) prints to the workers' log; the
    # failed run's error must show that, not the run's own (empty) log.
    import types
    from mcpo.experiments import backends
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ImportError: cannot import name boom' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(backends, "sys", types.SimpleNamespace(executable=str(fake)))
    w = backends._Worker(tmp_path / "workers.log")
    run_log = tmp_path / "run.log"
    run_log.write_text("\n=== 2026-12-05 03:31:50 mcpo train --algo ppo\n")
    w.give({"name": "r"}, 0, run_log)
    w.proc.wait()
    out = w.poll()
    w.close()
    assert out["status"] == "failed" and out["exit_code"] == 1
    assert str(tmp_path / "workers.log") in out["error"]
    assert "ImportError: cannot import name boom" in out["error"]
