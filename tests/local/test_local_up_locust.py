"""The locustfile's plain command against `poolbench local up` with its defaults: the managed
arm is sized as `run --preset seed` sizes it (64 slots per EE), so a seed-shaped load (every
user holding a connection through a sleep) completes with no failures; and when capacity does
run out, the throttles are named as such rather than as bare 500s."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interrupt import interrupt_poolbench

pytestmark = [pytest.mark.local, pytest.mark.slow]  # `poolbench run` end to end, or a long bench
ROOT = Path(__file__).resolve().parents[2]


def _local_up_then_locust(tmp_path: Path, extra: list[str]) -> tuple[dict[str, int], str]:
    """Starts `local up` (managed arm only, to spare the two cores 100 standard cold starts),
    runs the scaled-down seed load (100 users, 200 requests, 1 s sleep) once it is serving,
    then stops it with Ctrl-C. Returns Locust's managed row and local up's log."""
    outputs = tmp_path / "outputs.json"
    stats: dict[str, int] = {}

    def run_locust_when_serving() -> bool:
        if not outputs.exists():
            return False
        argv = [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless"]
        argv += ["-u", "100", "-r", "100", "--outputs-file", str(outputs)]
        argv += ["--requests-per-arm", "200", "--sleep-ms", "1000", "--queries", "2"]
        argv += ["--hold", "true", "--csv", str(tmp_path / "locust"), "--only-summary"]
        done = subprocess.run(
            argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: some requests failed
        with (tmp_path / "locust_stats.csv").open(newline="") as fh:
            row = next(r for r in csv.DictReader(fh) if r["Name"] == "managed")
        stats.update(requests=int(row["Request Count"]), failures=int(row["Failure Count"]))
        stats["exit"] = done.returncode
        return True

    args = ["local", "up", "--arms", "managed", "--outputs-file", str(outputs)]
    args += ["--run-dir", str(tmp_path / "stack"), *extra]
    result = interrupt_poolbench(args, tmp_path / "up.log", run_locust_when_serving, 180)
    assert result.returncode == 0, result.log[-2000:]
    assert result.left_after == []
    return stats, result.log


def test_plain_locust_against_local_up_defaults_has_no_failures(tmp_path: Path) -> None:
    stats, log = _local_up_then_locust(tmp_path, [])

    assert stats == {"requests": 200, "failures": 0, "exit": 0}
    assert "throttled" not in log


def test_throttles_are_named_in_local_ups_log(tmp_path: Path) -> None:
    # The old default, 16 slots x 3 EEs = 48 for 100 users: the rest are throttled.
    stats, log = _local_up_then_locust(tmp_path, ["--slots-per-ee", "16"])

    assert stats["failures"] > 0
    assert "managed" in log and "throttled (Lambda 429" in log
    totals = [line for line in log.splitlines() if "throttled requests (answered 500)" in line]
    assert len(totals) == 1
    # Every failure Locust saw is a throttle the front counted.
    assert totals[0].endswith(f"managed {stats['failures']:,}")
