"""The tidy dataset every source produces and every consumer reads: metrics.csv.

One row per value, columns `time,arm,metric,stat,value,unit,source`, so a local run and a
CloudWatch run are compared by the same code, and users can load the file into anything.
A missing value is an empty `value` cell (NaN in pandas), never 0.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from analysis.runfolder import write_chunks_atomic

COLUMNS = ("time", "arm", "metric", "stat", "value", "unit", "source")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Pseudo-arms for values that belong to the whole run, not one arm.
DATABASE_ARM = "database"
API_ARM = "api"
HOST_ARM = "host"  # the machine a local run ran on: CPU use per second (local/cpu.py)

# Sources that describe an arm as a whole; per-EE rows carry `<kind>:<ee_id>`.
ARM_LEVEL_SOURCES = frozenset({"local", "probe", "cloudwatch", "responses"})

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
        return normalise(pd.DataFrame(self.columns, columns=list(COLUMNS)))


def empty() -> pd.DataFrame:
    """A dataset with no rows but the right columns and types."""
    return RowBuffer().to_frame()


LABELS = ("arm", "metric", "stat", "unit", "source")


def _as_categorical(column: pd.Series) -> Any:
    """A column as a Categorical whose categories are plain strings (one dtype everywhere,
    so categoricals from different sources can be merged)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        cat = pd.Categorical(column)
    else:
        cat = pd.Categorical(column.fillna("").astype(str))
    return pd.Categorical.from_codes(cat.codes, categories=pd.Index(cat.categories.astype(str)))


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Parses `time` to UTC datetimes and `value` to float, whatever the frame came from.

    Times are parsed once per distinct value and labels stored as categories: a one-hour run
    has millions of rows but only thousands of distinct times and a few hundred labels."""
    frame = frame.copy()
    times = _as_categorical(frame["time"])
    parsed = pd.to_datetime(pd.Index(times.categories.astype(str)), format=TIME_FORMAT, utc=True)
    frame["time"] = parsed.take(times.codes) if len(times.codes) else parsed[:0]
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    for column in LABELS:
        frame[column] = _as_categorical(frame[column])
    return frame


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Raw frames (string or categorical columns, `time` as text) -> one normalised dataset,
    in time order; categories are merged rather than expanded to millions of strings."""
    if len(frames) == 1:
        return _sorted(normalise(frames[0]))
    merged: dict[str, Any] = {
        column: union_categoricals([_as_categorical(f[column]) for f in frames])
        for column in ("time", *LABELS)
    }
    merged["value"] = np.concatenate([f["value"].to_numpy(dtype="float64") for f in frames])
    return _sorted(normalise(pd.DataFrame(merged, columns=list(COLUMNS))))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    order = np.argsort(frame["time"].to_numpy(dtype="int64"), kind="stable")
    return frame.take(order).reset_index(drop=True)


def concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Several datasets as one, sorted by time then arm (stable for equal keys)."""
    parts = [f for f in frames if not f.empty]
    if not parts:
        return empty()
    merged = pd.concat(parts, ignore_index=True)
    for column in LABELS:  # differing categories concatenate as object: make them categories
        merged[column] = _as_categorical(merged[column])
    return _sorted(merged)


def _quote(text: str) -> str:
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _value_cell(value: Any) -> str:
    """Empty when missing; integers without '.0' (most gauges are counts)."""
    number = float(value)
    if math.isnan(number):
        return ""
    return str(int(number)) if number.is_integer() else repr(number)


def _csv_chunks(frame: pd.DataFrame, rows_per_chunk: int = 1_000_000) -> Iterator[bytes]:
    """metrics.csv as encoded chunks.

    A row is its time cell plus the rest of the row, and the rest (arm, metric, stat,
    value, unit, source) takes few distinct forms (labels x small counts), so each distinct
    form is rendered once and a row costs one string concatenation: pandas' to_csv and
    csv.writer cost seconds per million rows."""
    yield (",".join(COLUMNS) + "\n").encode("utf-8")
    if frame.empty:
        return
    time_codes, time_uniques = pd.factorize(frame["time"])
    time_cells = np.array(
        [pd.Timestamp(t).strftime(TIME_FORMAT) for t in time_uniques], dtype=object
    )
    rest = ("arm", "metric", "stat", "value", "unit", "source")
    codes, uniques = zip(
        *(pd.factorize(frame[c], use_na_sentinel=False) for c in rest), strict=True
    )
    dims = tuple(max(len(u), 1) for u in uniques)
    key = np.ravel_multi_index(tuple(np.asarray(c, dtype="int64") for c in codes), dims)
    rest_codes, rest_keys = pd.factorize(key)
    parts = np.unravel_index(np.asarray(rest_keys, dtype="int64"), dims)
    render = (
        [_quote(str(x)) for x in uniques[0]],
        *(
            [_value_cell(x) for x in u] if name == "value" else [_quote(str(x)) for x in u]
            for name, u in zip(rest[1:], uniques[1:], strict=True)
        ),
    )
    rest_cells = np.array(
        [
            "," + ",".join(render[col][idx[i]] for col, idx in enumerate(parts)) + "\n"
            for i in range(len(rest_keys))
        ],
        dtype=object,
    )
    for start in range(0, len(frame), rows_per_chunk):
        stop = start + rows_per_chunk
        times = time_cells.take(time_codes[start:stop])
        tails = rest_cells.take(rest_codes[start:stop])
        yield "".join(map(operator.add, times, tails)).encode("utf-8")


def write_metrics(frame: pd.DataFrame, path: Path) -> None:
    """Writes metrics.csv atomically; missing values become empty cells."""
    write_chunks_atomic(path, _csv_chunks(frame))


def read_metrics(path: Path) -> pd.DataFrame:
    """Reads metrics.csv back into the same types write_metrics started from."""
    frame = pd.read_csv(
        path,
        dtype={c: "category" for c in ("time", "arm", "metric", "stat", "unit", "source")},
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
