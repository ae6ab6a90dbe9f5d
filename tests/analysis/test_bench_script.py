"""scripts/bench_report.py keeps working: a one-hour, three-arm synthetic run at 1 s (small
user count here, so the suite stays fast) prints its build time and removes its folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_report.py"


def test_bench_prints_the_report_build_time() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--users", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # The script's exit code is its verdict against the speed target (1 = SLOW); a loaded
    # machine may miss it, and speed targets live in benchmarks, not in timed tests.
    verdict = re.search(r"target < 5 s\) (OK|SLOW)", done.stdout)
    assert verdict, done.stdout + done.stderr
    assert done.returncode == (0 if verdict.group(1) == "OK" else 1), done.stderr
    match = re.search(r"3 arms x 3600 s at 1 s, 2 users/arm, (\d+) metric rows: "
                      r"report built in ([\d.]+) s", done.stdout)  # fmt: skip
    assert match, done.stdout
    assert int(match.group(1)) > 3600 * 3
    assert "run folder removed" in done.stdout
