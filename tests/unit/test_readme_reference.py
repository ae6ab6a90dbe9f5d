"""The README's command reference names every option the CLI has, so it cannot fall behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from poolbench.cli import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _options(path: list[str]) -> list[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    names: list[str] = []
    for param in command.params:
        if getattr(param, "hidden", False):  # for tests only (run --slow-phase): not the user's
            continue
        names += [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
    return [n for n in names if n != "--help"]


@pytest.mark.parametrize("path", [["run"], ["local", "up"], ["collect"], ["report"]])
def test_readme_names_every_option(path: list[str]) -> None:
    # a whole option, not a prefix of another (`--out` is not `--outputs-file`)
    missing = [n for n in _options(path) if not re.search(re.escape(n) + r"(?![\w-])", README)]
    assert missing == [], f"README.md lacks poolbench {' '.join(path)} {missing}"
    assert _options(["run"])  # the walk found options at all


def test_readme_names_the_run_folder_files() -> None:
    for name in ("locust.log", "locust_command.txt", "samples.jsonl", "summary.json"):
        assert f"`{name}`" in README
