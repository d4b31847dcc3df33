"""The package's layers only look down: no import cycle between bsweep's modules (and the
Hydra plugins), counting imports inside functions too, since a cycle hidden in a function still
couples the two modules and breaks as soon as one of them is imported first."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bsweep", "hydra_plugins")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of `known` that `path` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from pkg import sub` imports pkg.sub when it is a module
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` depends on the deepest known module
                t = t.rpartition(".")[0]
            if t and t != name:  # a package's __init__ counts: importing it runs it
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_the_finder_sees_a_cycle_inside_a_function():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_one_that_imports_it_back():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The bottom layer: the typed config, the plan, the on-disk contract and its checks (no torch).
BOTTOM = ("bsweep.config", "bsweep.plan", "bsweep.records", "bsweep.placement", "bsweep.validate",
          "bsweep.targets", "bsweep.interrupt")
TOP = ("bsweep.cli", "bsweep.app", "bsweep.__main__")


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_each_layer_imports_only_those_below_it():
    g = graph()
    for low in BOTTOM:
        above = {m for m in g[low] if _within(m, ("bsweep.train", "bsweep.sweep", "bsweep.analysis", *TOP, "hydra_plugins"))}
        assert not above, f"{low} imports {above}"
    for name, deps in g.items():
        if _within(name, ("bsweep.train",)):
            above = {m for m in deps if _within(m, ("bsweep.sweep", "bsweep.analysis", *TOP, "hydra_plugins"))}
            assert not above, f"{name} imports {above}"
        if _within(name, ("bsweep.analysis",)):
            above = {m for m in deps if _within(m, ("bsweep.train", "bsweep.sweep", *TOP, "hydra_plugins"))}
            assert not above, f"{name} imports {above}"
    # bench is a leaf: only the commands that calibrate a study's seconds import it
    users = {m for m, deps in g.items() if "bsweep.sweep.bench" in deps}
    assert users <= {"bsweep.cli", "bsweep.sweep.reproduce", "bsweep.sweep.verify"}, users
    # schedule arithmetic has no torch
    assert "import torch" not in (ROOT / "bsweep" / "train" / "schedule.py").read_text()


def test_the_bottom_layer_and_analysis_load_no_torch():
    import subprocess
    import sys

    for module in ("bsweep", "bsweep.config", "bsweep.plan", "bsweep.records", "bsweep.analysis"):
        code = f"import sys, {module}; print('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        assert out.stdout.strip() == "False", f"import {module} loads torch"


def test_the_plugins_use_only_public_names_of_bsweep():
    # a plugin is a thin adapter over bsweep.sweep: what it needs is bsweep's public API
    for path in (ROOT / "hydra_plugins").rglob("*.py"):
        tree, modules = ast.parse(path.read_text()), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "bsweep":
                private = [a.name for a in node.names if a.name.startswith("_")]
                private += [part for part in node.module.split(".") if part.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
                modules |= {a.asname or a.name for a in node.names}
            if isinstance(node, ast.Import):
                modules |= {a.asname or a.name for a in node.names if a.name.split(".")[0] == "bsweep"}
        for node in ast.walk(tree):  # `plan._x` on a module imported from bsweep
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                assert not node.attr.startswith("_"), f"{path.name} uses {node.value.id}.{node.attr}"


def test_only_workers_knows_the_fork_server():
    # the worker pool and the fork server it forks from are one module's state
    knows = {module_name(p) for p in modules().values() if "forkserver" in p.read_text()}
    assert knows <= {"bsweep.sweep.workers", "bsweep.sweep.forkserver_signals"}, knows
