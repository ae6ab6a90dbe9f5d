"""The layout is the architecture: each top-level package may import only what README's table
says, nothing outside infra/ imports aws_cdk, and nothing outside analysis/ draws charts."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = ("functions", "local", "loadtest", "analysis", "poolbench", "infra", "input_errors")
LEAVES = {"functions.contract", "input_errors"}
"""Standard-library leaves every package may import: the shared names and the input error."""
ALLOWED: dict[str, set[str]] = {
    "functions": {"functions.contract"},
    "input_errors": set(),
    "infra": {"functions"},
    "local": {"functions.pooler", *LEAVES},
    "loadtest": LEAVES,
    "analysis": LEAVES,
    "poolbench": {"local", "loadtest", "analysis", *LEAVES},
}
STDLIB_ONLY = ("functions/contract.py", "input_errors/__init__.py")
ONLY_IN = {"aws_cdk": "infra", "cdk_nag": "infra", "constructs": "infra", "matplotlib": "analysis"}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from functions import contract` imports functions.contract, not all of functions.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources() -> list[Path]:
    return sorted(p for package in OURS for p in (REPO / package).rglob("*.py"))


def violations(path: Path) -> list[str]:
    """Every import of ``path`` that its package may not make, as one line each."""
    package = path.relative_to(REPO).parts[0]
    found: list[str] = []
    for name in sorted(imports_of(path)):
        top = name.split(".")[0]
        if top in ONLY_IN and ONLY_IN[top] != package:
            found.append(f"{path}: {name} belongs in {ONLY_IN[top]}/ only")
        if top in OURS and top != package:
            allowed = ALLOWED[package]
            if not any(name == a or name.startswith(a + ".") for a in allowed):
                found.append(f"{path}: {package}/ may not import {name}")
    return found


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_follow_the_layout(path: Path) -> None:
    assert violations(path) == []


@pytest.mark.parametrize("leaf", STDLIB_ONLY)
def test_the_shared_leaves_import_only_the_standard_library(leaf: str) -> None:
    # They ship to Lambda (the contract) or sit under every layer: nothing of ours, no package.
    names = {n.split(".")[0] for n in imports_of(REPO / leaf)} - {"__future__"}
    assert names <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)


@pytest.mark.parametrize("package", ["local", "loadtest", "analysis", "functions"])
def test_a_lower_layer_importing_the_cli_package_is_caught(package: str, tmp_path: Path) -> None:
    # The rule itself, on a file that breaks it: poolbench/ sits above these four.
    bad = REPO / package / "_layering_probe.py"
    bad.write_text("from poolbench import run\n")
    try:
        assert violations(bad) == [f"{bad}: {package}/ may not import poolbench.run"]
    finally:
        bad.unlink()


def module_graph() -> dict[str, set[str]]:
    """Each module of ours -> the modules of ours it imports, type-checking imports included
    (a cycle hidden behind TYPE_CHECKING is still two modules that need each other)."""
    modules: dict[str, Path] = {}
    for path in sources():
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for name_imported in imports_of(path):
            module = name_imported
            while module and module not in modules:  # `a.b.C` -> the module `a.b`
                module = module.rpartition(".")[0]
            if module and module != name:
                deps.add(module)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, each as the modules along it."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                found.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # the check
    assert cycles(module_graph()) == []
