"""Exact latency from the per-request records (requests/*.csv, loadtest/records.py).

Every percentile poolbench shows is computed here from the requests themselves, by the
nearest-rank rule: the p-th percentile is the smallest latency with at least p % of the
requests at or below it. It is always a latency some request had, so p50 is never below the
minimum (Locust's bucketed percentiles can be) and no difference is rounded away.

Latency percentiles and the mean are over successful requests: a failure's time (a fast 429,
or a timeout) says nothing about how long a served request took, and would drag p50 down when
an arm throttles. The count, and a mean over every request, are kept too, because those are
what Locust's own totals measure and must agree with (a check that no record is missing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.runfolder import RunFolder

REQUESTS_DIR = "requests"
"""The run folder's per-process record files (written by loadtest/records.py, whose columns
these are; docs/contracts.md is the shared definition, analysis/ does not import loadtest/)."""

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
"""The percentiles every summary carries, by field-name stem."""

_DTYPES: dict[str, str] = {
    "start": "float64",
    "arm": "category",
    "latency_ms": "float64",
    "ok": "int8",
    "status": "float64",  # empty when no response came back
    "ee": "category",
    "worker": "category",
    "cold": "float64",  # 1, 0, or empty when the handler did not say
    "init_age_ms": "float64",
    "connect_ms": "float64",
    "query_ms": "float64",
    "queries": "float64",
    "sleep_ms": "float64",
    "handler_ms": "float64",
    "process": "category",
    "error": "str",
}


@dataclass(frozen=True)
class LatencyStats:
    """One arm's latency from its records; percentiles and mean over successful requests."""

    requests: int
    successes: int
    min_ms: float | None
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    mean_all_ms: float | None
    """Mean over every request, failures included: Locust's 'Average Response Time'."""
    cold_starts: int
    """Requests that waited for an init (`cold_starts`)."""


def record_files(folder: RunFolder) -> list[Path]:
    """The run's record files, one per Locust process; empty for a run made before them."""
    directory = folder.file(REQUESTS_DIR)
    return sorted(directory.glob("*.csv")) if directory.is_dir() else []


def read_records(paths: list[Path]) -> pd.DataFrame:
    """Every record of the given files as one frame in start order, with an `end` column."""
    parts = [
        pd.read_csv(
            path,
            dtype=_DTYPES,
            keep_default_na=False,
            na_values={c: [""] for c in _DTYPES if _DTYPES[c] == "float64"},
        )
        for path in paths
    ]
    if not parts:
        frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})
    else:
        frame = pd.concat(parts, ignore_index=True)
        for column in ("arm", "ee", "worker", "process"):
            frame[column] = frame[column].astype(str).astype("category")
    frame["ok"] = frame["ok"].astype(bool)
    frame["end"] = frame["start"] + frame["latency_ms"] / 1000
    frame["cold_start"] = cold_starts(frame)
    order = np.argsort(frame["start"].to_numpy(), kind="stable")
    return frame.take(order).reset_index(drop=True)


def cold_starts(frame: pd.DataFrame) -> pd.Series:
    """True for a request that waited for an init: its worker's first (the handler's
    `cold_start`) whose init ended after the request was sent.

    The handler reports init_age_ms, from its init's end to the invoke; the request was sent
    latency_ms - handler_ms before the handler returned, so it waited for the init when
    init_age_ms < latency_ms - handler_ms (the response's trip back is counted as waiting
    too; it is milliseconds against an init's hundreds).

    The handler knows when its own worker's init ran, not the EE's: per-worker first invoke
    is the signal. On Managed Instances workers start with their EE, before the traffic, so
    their first requests did not wait and are not counted; on standard Lambda the first
    request of an EE waits for its init. Without init_age_ms (an older handler) every first
    invoke counts."""
    first = frame["cold"] == 1
    age = frame["init_age_ms"]
    waited = frame["latency_ms"] - frame["handler_ms"].fillna(0.0)
    return first & (age.isna() | (age < waited))


def load_records(folder: RunFolder) -> pd.DataFrame | None:
    """The run's records, or None when the run has none (made before exact records)."""
    paths = record_files(folder)
    return read_records(paths) if paths else None


def _rank(percent: float, count: int) -> int:
    """ceil(percent % of count) in exact arithmetic: in floats 99.9 / 100 * 1000 is
    999.0000000000001, which would move the rank up by one (numpy's percentile does)."""
    return math.ceil(Fraction(str(percent)) * count / 100)


def nearest_rank(ordered: np.ndarray, percent: float) -> float:
    """The smallest value with at least `percent` % of the sorted `ordered` at or below it."""
    rank = max(_rank(percent, len(ordered)), 1)
    return float(ordered[rank - 1])


def latency_stats(frame: pd.DataFrame, arm: str) -> LatencyStats:
    """One arm's numbers from its records."""
    rows = frame[frame["arm"] == arm]
    everything = rows["latency_ms"].to_numpy(dtype="float64")
    ok = np.sort(rows.loc[rows["ok"], "latency_ms"].to_numpy(dtype="float64"))
    cold = int(rows["cold_start"].sum())
    if len(ok) == 0:
        return LatencyStats(
            requests=len(rows),
            successes=0,
            min_ms=None,
            mean_ms=None,
            p50_ms=None,
            p90_ms=None,
            p95_ms=None,
            p99_ms=None,
            p999_ms=None,
            max_ms=None,
            mean_all_ms=float(everything.mean()) if len(everything) else None,
            cold_starts=cold,
        )
    points = {name: nearest_rank(ok, pct) for name, pct in PERCENTILES.items()}
    return LatencyStats(
        requests=len(rows),
        successes=len(ok),
        min_ms=float(ok[0]),
        mean_ms=float(ok.mean()),
        p50_ms=points["p50"],
        p90_ms=points["p90"],
        p95_ms=points["p95"],
        p99_ms=points["p99"],
        p999_ms=points["p999"],
        max_ms=float(ok[-1]),
        mean_all_ms=float(everything.mean()),
        cold_starts=cold,
    )


def per_second(frame: pd.DataFrame, arm: str) -> pd.DataFrame:
    """p50 and p99 of the successful requests that ended in each UTC second; columns
    `time, p50_ms, p99_ms, requests` (the second a request ended in, as Locust counts it)."""
    rows = frame[(frame["arm"] == arm) & frame["ok"]]
    if rows.empty:
        return pd.DataFrame({"time": [], "p50_ms": [], "p99_ms": [], "requests": []})
    second = np.floor(rows["end"].to_numpy()).astype("int64")
    latencies = rows["latency_ms"].to_numpy(dtype="float64")
    order = np.lexsort((latencies, second))
    second, latencies = second[order], latencies[order]
    seconds, first, counts = np.unique(second, return_index=True, return_counts=True)
    # integer ceil(p * n / 100): exact for whole percents
    p50 = latencies[first + (50 * counts + 99) // 100 - 1]
    p99 = latencies[first + (99 * counts + 99) // 100 - 1]
    return pd.DataFrame(
        {
            "time": pd.to_datetime(seconds, unit="s", utc=True),
            "p50_ms": p50,
            "p99_ms": p99,
            "requests": counts,
        }
    )


BREAKDOWN_PARTS = ("sleep_ms", "query_ms", "connect_ms", "rest_ms")
"""Where a request's time went; rest = latency - the others (gateway, runtime, handler)."""


def breakdown(frame: pd.DataFrame, arm: str) -> dict[str, float] | None:
    """Mean time per successful request in each part, summing to its mean latency; None when
    the handler reported no timings (an old run, or a target whose body is not ours)."""
    rows = frame[(frame["arm"] == arm) & frame["ok"]]
    rows = rows.dropna(subset=["sleep_ms", "query_ms", "connect_ms"])
    if rows.empty:
        return None
    sleep = rows["sleep_ms"].to_numpy()
    query = rows["query_ms"].to_numpy()
    connect = rows["connect_ms"].to_numpy()
    rest = rows["latency_ms"].to_numpy() - sleep - query - connect
    return {
        "sleep_ms": float(sleep.mean()),
        "query_ms": float(query.mean()),
        "connect_ms": float(connect.mean()),
        "rest_ms": float(rest.mean()),
        "requests": float(len(rows)),
    }
