"""The tidy dataset every source produces and every consumer reads: metrics.csv.

One row per value, columns `time,arm,metric,stat,value,unit,source`, so a local run and a
CloudWatch run are compared by the same code, and users can load the file into anything.
A missing value is an empty `value` cell (NaN in pandas), never 0.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.runfolder import write_bytes_atomic

COLUMNS = ("time", "arm", "metric", "stat", "value", "unit", "source")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Pseudo-arms for values that belong to the whole run, not one arm.
DATABASE_ARM = "database"
API_ARM = "api"

# Sources that describe an arm as a whole; per-EE rows carry `<kind>:<ee_id>`.
ARM_LEVEL_SOURCES = frozenset({"local", "probe", "cloudwatch"})

# Statistics that mean "the value at or the maximum over a moment": peaks are taken over these.
PEAK_STATS = ("Maximum", "Sample")


@dataclass
class RowBuffer:
    """Column-wise row collector: building lists is far cheaper than a DataFrame per row."""

    columns: dict[str, list[object]] = field(default_factory=lambda: {c: [] for c in COLUMNS})

    def add(
        self,
        time: str,
        arm: str,
        metric: str,
        stat: str,
        value: float | None,
        unit: str,
        source: str,
    ) -> None:
        """Appends one row; `value=None` records a missing value."""
        cols = self.columns
        cols["time"].append(time)
        cols["arm"].append(arm)
        cols["metric"].append(metric)
        cols["stat"].append(stat)
        cols["value"].append(float("nan") if value is None else float(value))
        cols["unit"].append(unit)
        cols["source"].append(source)

    def __len__(self) -> int:
        return len(self.columns["time"])

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with parsed UTC times."""
        frame = pd.DataFrame(self.columns, columns=list(COLUMNS))
        return normalise(frame)


def empty() -> pd.DataFrame:
    """A dataset with no rows but the right columns and types."""
    return RowBuffer().to_frame()


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Parses `time` to UTC datetimes and `value` to float, whatever the frame came from."""
    frame = frame.copy()
    frame["time"] = pd.to_datetime(frame["time"], format=TIME_FORMAT, utc=True)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    for column in ("arm", "metric", "stat", "unit", "source"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Several datasets as one, sorted by time then arm (stable for equal keys)."""
    parts = [f for f in frames if not f.empty]
    if not parts:
        return empty()
    merged = pd.concat(parts, ignore_index=True)
    return merged.sort_values(["time", "arm"], kind="stable").reset_index(drop=True)


def write_metrics(frame: pd.DataFrame, path: Path) -> None:
    """Writes metrics.csv atomically; missing values become empty cells."""
    out = frame.loc[:, list(COLUMNS)].copy()
    out["time"] = out["time"].dt.strftime(TIME_FORMAT)
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, na_rep="", float_format="%.10g")
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))


def read_metrics(path: Path) -> pd.DataFrame:
    """Reads metrics.csv back into the same types write_metrics started from."""
    frame = pd.read_csv(
        path,
        dtype={"arm": str, "metric": str, "stat": str, "unit": str, "source": str},
        keep_default_na=False,
        na_values={"value": [""]},
    )
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {', '.join(missing)}")
    return normalise(frame)


def arm_level(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows describing whole arms (not one EE's pool or concurrency)."""
    return frame[frame["source"].isin(ARM_LEVEL_SOURCES)]


def series(
    frame: pd.DataFrame, arm: str, metric: str, stats: Iterable[str] = PEAK_STATS
) -> pd.Series:
    """One arm-level metric as a time-indexed series (max over sources at the same time)."""
    rows = arm_level(frame)
    rows = rows[
        (rows["arm"] == arm) & (rows["metric"] == metric) & (rows["stat"].isin(list(stats)))
    ]
    rows = rows.dropna(subset=["value"])
    if rows.empty:
        return pd.Series(dtype="float64")
    return rows.groupby("time")["value"].max().sort_index()


def peak(frame: pd.DataFrame, arm: str, metric: str) -> float | None:
    """Largest recorded value of a gauge for an arm; None when no value was recorded."""
    values = series(frame, arm, metric)
    return None if values.empty else float(values.max())
