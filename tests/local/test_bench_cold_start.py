"""scripts/bench_cold_start.py keeps working: one real cold start, every phase printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_cold_start.py"
pytestmark = [pytest.mark.local, pytest.mark.slow]  # `poolbench run` end to end, or a long bench


def test_one_cold_start_prints_every_phase() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--at", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "== 1 cold start(s) at once: 1 EEs, statuses [200]" in out
    for phase in (
        "queued for an init slot",
        "launcher -> PgBouncer up",
        "PgBouncer up -> ext. ready",
        "runtime start (init)",
        "first invoke",
    ):
        match = re.search(rf"{re.escape(phase)}\s+p50\s+(\d+)\s+max\s+(\d+) ms", out)
        assert match, f"{phase} missing:\n{out}"
    up = re.search(r"launcher -> PgBouncer up\s+p50\s+(\d+)", out)
    assert up and int(up.group(1)) > 0  # the launcher and PgBouncer take real time
    assert re.search(r"stack CPU [\d.]+ s = \d+ ms per cold start", out)
