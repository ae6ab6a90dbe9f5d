"""Locust's CSV files (`--csv <run>/locust --csv-full-history`) read per arm.

The load step names every request after its arm, so Locust's `Name` column is the arm. The
column names below are Locust 2.x's own (checked against a real headless run of 2.47).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class LocustArmStats:
    """One arm's totals from locust_stats.csv (times in milliseconds)."""

    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    average_ms: float | None
    max_ms: float | None
    requests_per_s: float | None


@dataclass(frozen=True)
class LocustFailure:
    """One row of locust_failures.csv: what went wrong on an arm and how often."""

    arm: str
    error: str
    occurrences: int


def _float(value: object) -> float | None:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(number) else float(number)


def read_stats(path: Path) -> dict[str, LocustArmStats]:
    """Per-arm totals; the Aggregated row is left out (arms are compared, not summed)."""
    frame = pd.read_csv(path, dtype={"Type": str, "Name": str}, keep_default_na=False)
    stats: dict[str, LocustArmStats] = {}
    for record in frame.to_dict("records"):
        name = str(record["Name"])
        if name == AGGREGATED:
            continue
        stats[name] = LocustArmStats(
            requests=int(record["Request Count"]),
            failures=int(record["Failure Count"]),
            p50_ms=_float(record.get("50%")),
            p95_ms=_float(record.get("95%")),
            p99_ms=_float(record.get("99%")),
            average_ms=_float(record.get("Average Response Time")),
            max_ms=_float(record.get("Max Response Time")),
            requests_per_s=_float(record.get("Requests/s")),
        )
    return stats


HISTORY_COLUMNS = {
    "Timestamp": "epoch",
    "User Count": "users",
    "Name": "arm",
    "Requests/s": "requests_per_s",
    "Failures/s": "failures_per_s",
    "50%": "p50_ms",
    "95%": "p95_ms",
    "99%": "p99_ms",
    "Total Request Count": "total_requests",
    "Total Failure Count": "total_failures",
}


def read_history(path: Path) -> pd.DataFrame:
    """Per-arm rows of locust_stats_history.csv with short column names and a UTC `time`.

    Locust writes `N/A` for percentiles before the first response; those become NaN.
    """
    frame = pd.read_csv(path, usecols=list(HISTORY_COLUMNS), na_values=["N/A"])
    frame = frame.rename(columns=HISTORY_COLUMNS)
    frame = frame[frame["arm"] != AGGREGATED].copy()
    frame["arm"] = frame["arm"].astype(str)
    frame["time"] = pd.to_datetime(frame["epoch"], unit="s", utc=True)
    return frame.reset_index(drop=True)


def read_failures(path: Path) -> list[LocustFailure]:
    """Failure kinds per arm, most frequent first."""
    frame = pd.read_csv(path, dtype={"Name": str, "Error": str}, keep_default_na=False)
    failures = [
        LocustFailure(arm=str(r["Name"]), error=str(r["Error"]), occurrences=int(r["Occurrences"]))
        for r in frame.to_dict("records")
    ]
    return sorted(failures, key=lambda f: (-f.occurrences, f.arm))
