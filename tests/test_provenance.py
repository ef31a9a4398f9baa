"""Which code made a run (mcpo.provenance): the source hash changes with any byte of the
package's Python source and with nothing else; the git commit is reported only for the `mcpo/`
folder of a checkout; run.json records the code at creation and when a resume runs other code;
a report names the code versions of its runs."""

import json
import shutil
import subprocess

import pytest

import mcpo.rundir as rundir
from mcpo import provenance
from mcpo.cli import main
from mcpo.rundir import MARKER, last_code

source_hash = provenance.source_hash.__wrapped__  # uncached
git_commit = provenance.git_commit.__wrapped__


def copy_package(dest):
    shutil.copytree(provenance.PACKAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_the_source_hash_changes_with_any_source_byte_and_ignores_everything_else(tmp_path):
    pkg = copy_package(tmp_path / "mcpo")
    h = source_hash(pkg)
    assert h == provenance.source_hash()  # the same source, wherever it lies
    (pkg / "__pycache__").mkdir(exist_ok=True)
    (pkg / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0bytecode")
    (pkg / "notes.txt").write_text("not source")
    assert source_hash(pkg) == h
    f = pkg / "algos" / "ppo.py"
    text = f.read_bytes()
    f.write_bytes(text.replace(b"0.2", b"0.3", 1))
    assert source_hash(pkg) != h
    f.write_bytes(text)
    assert source_hash(pkg) == h
    f.rename(pkg / "algos" / "ppo2.py")  # same bytes, another name
    assert source_hash(pkg) != h


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_git_commit_is_that_of_the_checkout_whose_mcpo_folder_was_imported(tmp_path):
    repo = tmp_path / "repo"
    pkg = copy_package(repo / "mcpo")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=t", "commit", "-q", "-m", "x")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert git_commit(pkg) == head
    (pkg / "algos" / "ppo.py").write_text("# changed\n")
    assert git_commit(pkg) == head + " (with uncommitted changes)"
    # a package somewhere inside a repository (say a venv's site-packages) is not its code
    inner = copy_package(repo / "venv" / "site-packages" / "mcpo")
    assert git_commit(inner) is None
    assert git_commit(copy_package(tmp_path / "plain" / "mcpo")) is None


def test_run_json_records_the_code_and_a_resume_by_other_code(tmp_path, monkeypatch):
    run = tmp_path / "r"
    tiny = ["--env-id", "Pendulum-v1", "--num-envs", "2", "--num-steps", "64",
            "--num-minibatches", "2", "--update-epochs", "2", "--no-progress",
            "--eval-episodes", "0", "--no-tensorboard"]
    assert main(["train", "--algo", "ppo", "--run-dir", str(run), "--total-timesteps", "256",
                 *tiny]) == 0
    marker = json.loads((run / MARKER).read_text())
    assert marker["code"] == provenance.code_identity()
    assert marker["code"]["source_sha256"] == source_hash(provenance.PACKAGE_DIR)
    # the same code resumes without a code event
    assert main(["train", "--resume", str(run), "--total-timesteps", "512", "--no-progress"]) == 0
    assert [h["event"] for h in json.loads((run / MARKER).read_text())["history"]] == ["budget"]
    other = dict(marker["code"], source_sha256="0" * 64)
    monkeypatch.setattr(rundir, "code_identity", lambda: other)
    for total in ("768", "1024"):  # recorded once: the second resume runs the same other code
        assert main(["train", "--resume", str(run), "--total-timesteps", total,
                     "--no-progress"]) == 0
    marker = json.loads((run / MARKER).read_text())
    assert [h["event"] for h in marker["history"]] == ["budget", "code", "budget", "budget"]
    assert marker["history"][1]["code"] == other and last_code(marker) == other
    assert marker["code"]["source_sha256"] != other["source_sha256"]  # creation kept


@pytest.mark.slow
def test_a_report_names_the_code_versions_of_its_runs(tiny_sweep, tmp_path):
    root = tmp_path / "sweep"
    shutil.copytree(tiny_sweep["out"], root)
    out = tmp_path / "rep"
    assert main(["report", str(root), "--out", str(out), "--reps", "200"]) == 0
    text = (out / "report.md").read_text()
    assert "### Code of the runs" in text and "different versions of the code" not in text
    assert f"source {provenance.source_hash()[:12]}" in text
    one = next(p for p in sorted(root.iterdir()) if (p / MARKER).is_file())
    m = json.loads((one / MARKER).read_text())
    m["history"].append({"time": "t", "event": "code",
                         "code": dict(m["code"], source_sha256="f" * 64)})
    (one / MARKER).write_text(json.dumps(m))
    assert main(["report", str(root), "--out", str(out), "--reps", "200"]) == 0
    text = (out / "report.md").read_text()
    assert "trained by 2 different versions of the code" in text and "source ffffffffffff" in text
