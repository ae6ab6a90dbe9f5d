"""Benchmark: how long `poolbench report` takes for a synthetic one-hour run at 1 s resolution
with three arms (standard, managed, proxy), from raw samples to report.html. Target: < 5 s.

Usage: uv run python scripts/bench_report.py [--users 100] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# The synthetic run folder maker lives with the tests; run from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.report import build_report
from tests.analysis.factory import ArmProfile, RunSpec, make_run_folder

TARGET_S = 5.0


def bench(root: Path, users: int) -> tuple[float, float, Path, int]:
    """Builds the run folder, then times build_report alone; returns wall seconds, CPU seconds
    of this process (less sensitive to other load on the machine), report path, rows."""
    spec = RunSpec(
        arms={
            "standard": ArmProfile(requests=720_000, failures=0, ees=None),
            "managed": ArmProfile(requests=719_000, failures=1_000, ees=3, server_per_client=0.2),
            "proxy": ArmProfile(
                requests=720_000, failures=0, ees=None, server_per_client=0.1, in_ee_pooler=False
            ),
        },
        seconds=3600,
        users=users,
        ramp_s=30,
    )
    run = make_run_folder(root, spec)
    start, cpu_start = time.perf_counter(), time.process_time()
    report = build_report(run)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rows = sum(1 for _ in (run / "metrics.csv").open(encoding="utf-8")) - 1
    return elapsed, cpu, report, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100, help="concurrent users per arm")
    parser.add_argument("--keep", type=Path, help="build the run folder here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="poolbench-bench-") as tmp:
        root = args.keep or Path(tmp)
        elapsed, cpu, report, rows = bench(root, args.users)
        verdict = "OK" if elapsed < TARGET_S else "SLOW"
        print(
            f"bench_report: 3 arms x 3600 s at 1 s, {args.users} users/arm, {rows} metric rows: "
            f"report built in {elapsed:.2f} s (target < {TARGET_S:.0f} s) {verdict}; "
            f"CPU {cpu:.2f} s, load average {os.getloadavg()[0]:.1f}"
        )
        print(f"bench_report: {report}" if args.keep else "bench_report: run folder removed")
    return 0 if elapsed < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
