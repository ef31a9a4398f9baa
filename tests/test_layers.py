"""The package's layering (docs/design.md §9): imports flow one way, with no cycles, and no
module hides an import of ours inside a function to dodge one."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mcpo"
# Third-party packages that are optional extras (or heavy and needed by one command only):
# the only imports allowed inside functions.
OPTIONAL = {"stable_baselines3", "torch", "imageio", "minigrid", "ale_py", "envpool",
            "gymnax", "ray", "wandb", "rliable", "xminigrid", "navix", "yaml", "matplotlib",
            "scipy", "PIL", "importlib"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in PKG.rglob("*.py")}


def imported(mod: str, node: ast.AST, is_pkg: bool, mods) -> list[str]:
    """Our modules an import statement refers to: `from mcpo.algos import memory` is
    mcpo.algos.memory, `from mcpo.config import TrainConfig` is mcpo.config."""
    out = []
    if isinstance(node, ast.Import):
        out = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        out = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
               for a in node.names]
    found = []
    for name in out:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in mods and name != mod:
            found.append(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    g: dict[str, set[str]] = {m: set() for m in mods}
    for m, tree in mods.items():
        is_pkg = (PKG.parent / m.replace(".", "/") / "__init__.py").exists()
        for node in ast.walk(tree):
            g[m].update(imported(m, node, is_pkg, mods))
    return g


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    # A package's __init__ re-exports its submodules (the package is the layer above them),
    # so edges into a package from inside it are the only allowed "upward" ones: drop them.
    def skip(a: str, b: str) -> bool:
        return a.startswith(b + ".")

    color, stack = {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if skip(n, m):
                continue
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in color:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(g):
        if n not in color:
            c = visit(n)
            if c:
                return c
    return None


def test_the_import_graph_has_no_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_module_of_ours_imports_its_own_package_upwards():
    """A module never imports its parent package (that would make it depend on its siblings
    through the package's re-exports)."""
    g = graph()
    bad = [(a, b) for a, edges in g.items() for b in edges if a.startswith(b + ".")]
    assert not bad, bad


def test_imports_inside_functions_are_only_optional_dependencies():
    hidden = []
    for m, tree in modules().items():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                elif isinstance(node, ast.ImportFrom):
                    names = ["mcpo"]  # a relative import is one of ours
                else:
                    continue
                for n in names:
                    if n.split(".")[0] not in OPTIONAL:
                        hidden.append(f"{m}: {n} (line {node.lineno})")
    assert not hidden, "imports inside functions: " + "; ".join(hidden)


def test_the_checker_finds_a_cycle():
    g = {"mcpo.a": {"mcpo.b"}, "mcpo.b": {"mcpo.c"}, "mcpo.c": {"mcpo.a"}, "mcpo.d": set()}
    assert find_cycle(g) == ["mcpo.a", "mcpo.b", "mcpo.c", "mcpo.a"]
    assert find_cycle({"mcpo.a": {"mcpo.b"}, "mcpo.b": set()}) is None


@pytest.mark.parametrize("leaf", ["mcpo.types"])
def test_the_leaf_module_imports_nothing_of_ours(leaf):
    assert graph()[leaf] == set()
