"""locust_ees-*.jsonl (written by the locustfile) -> ExecutionEnvironmentsServing rows.

Each response names the EE that served it, so the distinct EEs per arm per second are counted
the same way on both targets; CloudWatch has no such series. Files from several Locust
processes (or from each arm of a sequential run) are merged by union per second and arm.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from analysis.dataset import RowBuffer
from analysis.runfolder import format_time

METRIC = "ExecutionEnvironmentsServing"
SOURCE = "responses"
PATTERN = "locust_ees*.jsonl"


def read_serving_ees(run_dir: Path) -> pd.DataFrame:
    """One row per (second, arm): how many distinct EEs served a request in that second."""
    seen: dict[tuple[int, str], set[str]] = {}
    for path in sorted(run_dir.glob(PATTERN)):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key = (int(item["epoch"]), str(item["arm"]))
                ees = {str(ee) for ee in item["ees"]}
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interrupted write: skipped, never guessed
            seen.setdefault(key, set()).update(ees)
    rows = RowBuffer()
    for (second, arm), ees in sorted(seen.items()):
        stamp = format_time(datetime.fromtimestamp(second, UTC))
        rows.add(stamp, arm, METRIC, "Maximum", float(len(ees)), "Count", SOURCE)
    return rows.to_frame()
