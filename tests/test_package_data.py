"""Every data file of the package (the experiment presets, the paper's numbers) is declared as
package data, so a non-editable `pip install .` ships it (checked by hand into a fresh venv:
benchmarks/RESULTS.md §4)."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_non_python_file_in_the_package_is_package_data():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    data = [p for p in (ROOT / "mcpo").rglob("*") if p.is_file() and p.suffix not in
            (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "the package has data files (presets, paper numbers)"
    for p in data:
        pkg = ".".join(p.parent.relative_to(ROOT).parts)
        assert (p.parent / "__init__.py").is_file(), f"{p}: its folder is not a package"
        assert any(fnmatch.fnmatch(p.name, pat) for pat in declared.get(pkg, [])), \
            f"{p.relative_to(ROOT)} is not in [tool.setuptools.package-data] {pkg!r}"
