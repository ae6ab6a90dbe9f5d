"""Expectations recomputed from a run folder's raw files with the standard library only,
independently of the analysis package, so the tests compare two separate computations."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any


def raw_samples(run: Path) -> list[dict[str, Any]]:
    """samples.jsonl as parsed JSON objects."""
    lines = (run / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def peak(run: Path, arm: str, metric: str) -> float | None:
    """Largest value of a metric for an arm over all samples; None when never recorded."""
    values = [s["arms"][arm][metric] for s in raw_samples(run) if metric in s["arms"].get(arm, {})]
    return float(max(values)) if values else None


def locust_row(run: Path, arm: str) -> dict[str, str]:
    """The arm's row of locust_stats.csv."""
    with (run / "locust_stats.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == arm:
                return row
    raise KeyError(arm)


def expected_arm(run: Path, arm: str) -> dict[str, Any]:
    """The numbers summary.json must hold for an arm, by hand."""
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    row = locust_row(run, arm)
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    conc = peak(run, arm, "ConcurrentExecutions")
    db = peak(run, arm, "DatabaseConnections")
    start = datetime.fromisoformat(manifest["load_started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(manifest["load_ended_at"].replace("Z", "+00:00"))
    seconds = (end - start).total_seconds()
    qps = (requests - failures) * manifest["scenario"]["queries"] / seconds
    return {
        "requests": requests,
        "failures": failures,
        "successes": requests - failures,
        "p50_ms": float(row["50%"]),
        "p95_ms": float(row["95%"]),
        "p99_ms": float(row["99%"]),
        "peak_concurrency": conc,
        "peak_db_connections": db,
        "peak_execution_environments": peak(run, arm, "ExecutionEnvironments"),
        "db_connections_per_concurrent_request": (db / conc) if db is not None and conc else None,
        "queries_per_s": qps,
        "littles_law_floor": qps * 0.001,
    }
