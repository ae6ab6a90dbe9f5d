"""The layout is the architecture: each top-level package may import only what README's table
says, nothing outside infra/ imports aws_cdk, and nothing outside analysis/ draws charts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = ("functions", "local", "loadtest", "analysis", "poolbench", "infra")
ALLOWED: dict[str, set[str]] = {
    "functions": set(),
    "infra": {"functions"},
    "local": {"functions.pooler", "poolbench.errors"},
    "loadtest": {"poolbench.errors"},
    "analysis": {"poolbench.errors"},
    "poolbench": {"local", "loadtest", "analysis"},
}
ONLY_IN = {"aws_cdk": "infra", "cdk_nag": "infra", "constructs": "infra", "matplotlib": "analysis"}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources() -> list[Path]:
    return sorted(p for package in OURS for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_follow_the_layout(path: Path) -> None:
    package = path.relative_to(REPO).parts[0]
    for name in imports_of(path):
        top = name.split(".")[0]
        if top in ONLY_IN:
            assert ONLY_IN[top] == package, f"{path}: {name} belongs in {ONLY_IN[top]}/ only"
        if top in OURS and top != package:
            allowed = ALLOWED[package]
            assert any(name == a or name.startswith(a + ".") for a in allowed), (
                f"{path}: {package}/ may not import {name}"
            )
