"""Every command's --help as a user's 80-column terminal shows it: an example, no `<bool>` on
flags, RUN_DIR as the README writes it, and nothing cut off with an ellipsis."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMMANDS = [[], ["run"], ["collect"], ["report"], ["local"], ["local", "up"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "poolbench")
def test_help_has_an_example_and_reads_cleanly(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "poolbench.cli", *command, "--help"],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80", "TERM": "dumb"},
    )

    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Example: poolbench " in text
    assert "<bool>" not in text
    assert "…" not in text  # rich's ellipsis: a help text cut off mid-word
    assert "{run_dir}" not in text.lower()
    if command in (["collect"], ["report"]):
        assert f"Usage: poolbench {command[0]} [OPTIONS] RUN_DIR" in text
