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
    phases = {}
    for phase in (
        "queued for an init slot",
        "launcher (start to register)",
        "PgBouncer start",
        "init credential check",
        "runtime start (init)",
        "whole init (Init Duration)",
        "first invoke",
    ):
        match = re.search(rf"{re.escape(phase)}\s+p50\s+(\d+)\s+max\s+(\d+) ms", out)
        assert match, f"{phase} missing:\n{out}"
        phases[phase] = int(match.group(1))
    # the launcher and PgBouncer take real time; together less than the whole init
    assert phases["launcher (start to register)"] > 0 and phases["PgBouncer start"] > 0
    assert phases["launcher (start to register)"] < phases["whole init (Init Duration)"]
    # the steps the extension no longer takes on a good init are printed as such
    for gone in ("pgbouncer --version", "PgBouncer console login"):
        assert re.search(rf"{re.escape(gone)}\s+p50\s+n/a", out), out
    assert "PostgreSQL logins per cold start: 1.00" in out
    cpu = re.search(r"CPU per cold start: ([\d.]+) ms", out)
    assert cpu and float(cpu.group(1)) > 0, out
    parts = dict(re.findall(r"^    (\w[\w ]*?)\s+([\d.]+) ms$", out, re.MULTILINE))
    assert {"launchers", "PgBouncers", "runtimes", "PostgreSQL", "this process"} <= parts.keys()
    assert all(float(parts[k]) > 0 for k in ("launchers", "PgBouncers", "runtimes", "PostgreSQL"))
