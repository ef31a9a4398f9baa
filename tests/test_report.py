"""mcpo report and mcpo plot on the tiny sweep (tests/conftest.py: tiny_sweep): the tables hold
the methods and the numbers of the run directories, every figure is a valid PNG, the HTML
embeds them; the paper's numbers come along."""

import base64
import html.parser
import json

import numpy as np
import pytest
from PIL import Image

from mcpo import provenance
from mcpo.cli import main
from mcpo.report.paper import paper_numbers

PNG = b"\x89PNG\r\n\x1a\n"


def cell(values):
    m, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    return f"{m:,.0f} ± {sd:,.0f}" if abs(m) >= 1000 else f"{m:.2f} ± {sd:.2f}"


class Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        for k in ("href", "src"):
            if k in a and tag != "img":
                self.links.append(a[k])


@pytest.fixture(scope="module")
def report(tiny_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(tiny_sweep["out"]), "--out", str(out), "--reps", "2000"]) == 0
    return out


@pytest.mark.slow
def test_tables_hold_the_methods_and_numbers_of_the_run_directories(tiny_sweep, report):
    md = (report / "report.md").read_text()
    runs = {}
    for d in tiny_sweep["out"].glob("Pendulum-v1__*"):
        res = json.loads((d / "result.json").read_text())
        runs.setdefault(res["algo"], []).append(res)
    assert set(runs) == {"ppo", "mcpo"} and all(len(v) == 2 for v in runs.values())
    lines = md.splitlines()
    for label, algo in (("PPO", "ppo"), ("MCPO", "mcpo")):
        final = cell([r["final_return"] for r in runs[algo]])
        ev = cell([r["eval_return_mean"] for r in runs[algo]])
        assert any(line.startswith(f"| {label} |") and final in line for line in lines), final
        assert any(line.startswith(f"| {label} |") and ev in line for line in lines), ev
    # the best mean of each column is bold
    best = max(("PPO", "MCPO"), key=lambda lab: np.mean(
        [r["final_return"] for r in runs[lab.lower()]]))
    assert f"| {best} | **" in md
    # probability of improvement of MCPO over PPO, from first principles
    x = [r["final_return"] for r in runs["mcpo"]]
    y = [r["final_return"] for r in runs["ppo"]]
    p = np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y])
    assert f"| PPO | {p:.3f} |" in md
    # the paper's Table 1 Pendulum cells, every one, with its numbers
    t1 = paper_numbers()["tables"]["table1"]
    for row in t1["rows"]:
        m, s = row["cells"]["Pendulum"]
        assert f"| Table 1 | Pendulum | {row['method']} | {m:.2f} ± {s:.2f} |" in md
    # the failing run and the commands of every run
    assert "failed: Non-finite value" in md
    for d in tiny_sweep["out"].glob("Pendulum-v1__*"):
        cmd = json.loads((d / "run.json").read_text())["command"]
        assert " ".join(cmd) in md and d.name in md
    assert f"code: source {provenance.source_hash()[:12]}" in md and "jax " in md


@pytest.mark.slow
def test_every_figure_is_a_png_and_the_html_embeds_them(report):
    figs = sorted((report / "figures").glob("*.png"))
    names = {f.name for f in figs}
    assert {"curves.png", "mcpo_attention.png", "mcpo_alpha.png",
            "mcpo_timeline.png"} <= names
    for f in figs:
        assert f.read_bytes()[:8] == PNG
        with Image.open(f) as im:
            im.verify()
    md = (report / "report.md").read_text()
    for f in figs:
        assert f"](figures/{f.name})" in md
    # no --eval-psi-every in these runs: Fig. 1b is left out, and the report says so
    assert "mcpo_psi_returns.png" not in names and "not drawn" in md
    parser = Images()
    parser.feed((report / "report.html").read_text())
    assert len(parser.srcs) == len(figs)
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    assert parser.links == []  # nothing outside the file


@pytest.mark.slow
def test_plot_draws_any_logged_column_and_refuses_a_missing_one(tiny_sweep, tmp_path, capsys):
    runs = sorted(str(d) for d in tiny_sweep["out"].glob("Pendulum-v1__mcpo__*"))
    out = tmp_path / "alpha.png"
    assert main(["plot", *runs, "--metric", "alpha", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    assert main(["plot", runs[0], "--metric", "alpah", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no column 'alpah'" in err and "'alpha'" in err
    assert not (tmp_path / "x.png").exists()


def test_flags_that_do_not_change_training_do_not_split_a_setting():
    """Runs that differ only in where/how often they save or how they are evaluated (psi
    evaluation included) are one setting; a training hyperparameter splits them."""
    from mcpo.presets import make_config
    from mcpo.report.runs import _label_from_config

    a = make_config("mcpo", "Pendulum-v1", memory_size=40, eval_psi_every=10,
                    eval_psi_episodes=10, seed=1, checkpoint_every=5)
    b = make_config("mcpo", "Pendulum-v1", memory_size=40, eval_psi_every=20, seed=2,
                    eval_mode="stochastic")
    c = make_config("mcpo", "Pendulum-v1", memory_size=10, eval_psi_every=20, seed=2)
    assert _label_from_config(a) == _label_from_config(b) == ("mcpo", "mcpo (memory_size=40)")
    assert _label_from_config(c) == ("mcpo", "mcpo (memory_size=10)")


@pytest.mark.slow
def test_the_mechanism_table_holds_each_settings_late_half_diagnostics(tiny_sweep, report):
    from mcpo.logger import read_metrics
    md = (report / "report.md").read_text()
    assert "### What the memory did: Pendulum-v1" in md
    (row,) = [line for line in md.splitlines() if line.startswith("| MCPO | 2 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    per_run = {}
    for d in tiny_sweep["out"].glob("Pendulum-v1__mcpo__*"):
        rows = read_metrics(d / "metrics.csv")
        late = rows[len(rows) // 2:]
        for k in ("alpha", "memory_writes"):
            per_run.setdefault(k, []).append(np.mean([r[k] for r in late]))
    a = per_run["alpha"]
    want = f"{np.mean(a):.3f}" if f"{min(a):.3f}" == f"{max(a):.3f}" else \
        f"{np.mean(a):.3f} ({min(a):.3f} to {max(a):.3f})"
    assert cells[6] == want, (cells, want)
    w = per_run["memory_writes"]
    assert cells[8].split(" ")[0] == f"{np.mean(w):.1f}"
    assert cells[-2:] == ["—", "—"]  # no --eval-psi-every: no psi vs theta_old


def test_the_settings_of_a_crowded_plot_get_colours_far_apart():
    """12 MCPO settings beside PPO and KL-Fixed (the MuJoCo memory sweep): every label gets a
    colour at RGB distance >= 80 from every other label's (a spare blue beside PPO's read as
    PPO)."""
    from itertools import combinations

    from mcpo.report.figures import method_colors

    labels = [(f"MCPO {i}", "mcpo") for i in range(12)] + [("PPO", "ppo"),
                                                           ("KL-Fixed", "kl-fixed"),
                                                           ("Mean psi", "mcpo-mean")]
    colors = method_colors(labels)
    assert len(colors) == len(labels)
    rgb = {k: np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)]) for k, c in colors.items()}
    closest = min((float(np.linalg.norm(rgb[a] - rgb[b])), a, b)
                  for a, b in combinations(rgb, 2))
    assert closest[0] >= 80, closest
