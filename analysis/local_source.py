"""samples.jsonl (local recorder, or the aws probe) -> tidy dataset rows.

The recorder writes what it saw each second under CloudWatch's metric names; this module only
reshapes it, so a number in metrics.csv can be traced to one line of samples.jsonl.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.dataset import DATABASE_ARM, RowBuffer
from analysis.runfolder import parse_time
from poolbench.errors import InputError

# Gauges that the recorder reports as the maximum over the second.
MAX_GAUGES = frozenset({"ConcurrentExecutions", "ExecutionEnvironmentConcurrency"})
# Counters: the count within the second.
COUNTERS = frozenset({"Invocations", "Errors", "Throttles", "ColdStarts"})
# Everything else numeric is a reading at the sample time (ExecutionEnvironments, ...).

# PgBouncer SHOW POOLS columns -> metric names of the contract (`source=pgbouncer:<ee_id>`).
POOL_METRICS = {
    "cl_active": "PoolClientActive",
    "cl_waiting": "PoolClientWaiting",
    "sv_active": "PoolServerActive",
    "sv_idle": "PoolServerIdle",
    "sv_used": "PoolServerUsed",
    "sv_login": "PoolServerLogin",
    "maxwait": "PoolMaxWait",
}


def _stat_for(metric: str) -> str:
    if metric in MAX_GAUGES:
        return "Maximum"
    if metric in COUNTERS:
        return "Sum"
    return "Sample"


def _time_of(sample: dict[str, Any]) -> str:
    """The sample's second as metrics.csv writes it; `epoch` wins when both are present."""
    epoch = sample.get("epoch")
    if isinstance(epoch, int | float):
        return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raw = sample.get("time")
    if not isinstance(raw, str):
        raise ValueError("sample has neither epoch nor time")
    if len(raw) == 20 and raw.endswith("Z"):
        return raw
    return parse_time(raw).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _add_arm(rows: RowBuffer, time: str, arm: str, values: dict[str, Any], source: str) -> None:
    for metric, raw in values.items():
        if metric == "ees":
            continue
        number = _number(raw)
        if number is not None:
            rows.add(time, arm, metric, _stat_for(metric), number, "Count", source)
    ees = values.get("ees")
    if not isinstance(ees, dict):
        return
    for ee_id, ee in ees.items():
        if not isinstance(ee, dict):
            continue
        concurrency = _number(ee.get("concurrency"))
        if concurrency is not None:
            rows.add(
                time,
                arm,
                "ExecutionEnvironmentConcurrency",
                "Maximum",
                concurrency,
                "Count",
                f"ee:{ee_id}",
            )
        pool = ee.get("pool")
        if not isinstance(pool, dict):
            continue
        for column, metric in POOL_METRICS.items():
            value = _number(pool.get(column))
            if value is not None:
                unit = "Seconds" if column == "maxwait" else "Count"
                rows.add(time, arm, metric, "Sample", value, unit, f"pgbouncer:{ee_id}")


def read_samples(path: Path, source: str = "local") -> pd.DataFrame:
    """Parses samples.jsonl into the tidy dataset.

    A truncated last line (the recorder stopped mid-write) is skipped; a bad line anywhere
    else means the file is not what the contract says and raises InputError.
    """
    rows = RowBuffer()
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            time = _time_of(sample)
        except (json.JSONDecodeError, ValueError) as exc:
            if number == len(lines):
                break
            raise InputError(f"{path} line {number} is not a sample ({exc})") from exc
        arms = sample.get("arms")
        if isinstance(arms, dict):
            for arm, values in arms.items():
                if isinstance(values, dict):
                    _add_arm(rows, time, str(arm), values, source)
        database = sample.get("database")
        if isinstance(database, dict):
            total = _number(database.get("connections_total"))
            if total is not None:
                rows.add(
                    time, DATABASE_ARM, "DatabaseConnections", "Sample", total, "Count", source
                )
    return rows.to_frame()
