"""samples.jsonl -> tidy rows for every shape an EE entry can take, checked row by row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.dataset import read_metrics, write_metrics
from analysis.local_source import read_samples

POOL = {"cl_active": 4, "cl_waiting": 1, "sv_active": 2, "sv_idle": 3, "sv_used": 0,
        "sv_login": 0, "maxwait": 0.5}  # fmt: skip


def _rows(frame: pd.DataFrame) -> set[tuple[str, str, str, str, float, str, str]]:
    return {
        (t.strftime("%H:%M:%S"), a, m, s, v, u, src)
        for t, a, m, s, v, u, src in frame.itertuples(index=False)
        if not pd.isna(v)
    }


def test_every_ee_shape_becomes_the_same_rows(tmp_path: Path) -> None:
    sample = {
        "time": "2026-11-22T10:00:01Z",
        "arms": {
            "managed": {
                "ConcurrentExecutions": 5,
                "ees": {"m-1": {"concurrency": 5, "pool": POOL}},
            },
            "proxy": {"ees": {"p-1": {"concurrency": 1}, "p-2": {"concurrency": 0}}},
            # one EE lacks sv_login, one has a null: the row-by-row path, absent not 0
            "standard": {
                "ees": {
                    "s-1": {"concurrency": 1, "pool": {**POOL, "sv_login": None}},
                    "s-2": {"pool": {k: v for k, v in POOL.items() if k != "sv_login"}},
                }
            },
        },
    }
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(sample) + "\n", encoding="utf-8")
    frame = read_samples(path)
    rows = _rows(frame)
    t = "10:00:01"
    assert (t, "managed", "ConcurrentExecutions", "Maximum", 5.0, "Count", "local") in rows
    assert (
        t,
        "managed",
        "ExecutionEnvironmentConcurrency",
        "Maximum",
        5.0,
        "Count",
        "ee:m-1",
    ) in rows
    assert (t, "managed", "PoolServerActive", "Sample", 2.0, "Count", "pgbouncer:m-1") in rows
    assert (t, "managed", "PoolMaxWait", "Sample", 0.5, "Seconds", "pgbouncer:m-1") in rows
    assert (
        t,
        "proxy",
        "ExecutionEnvironmentConcurrency",
        "Maximum",
        0.0,
        "Count",
        "ee:p-2",
    ) in rows
    assert not [r for r in rows if r[1] == "proxy" and r[6].startswith("pgbouncer:")]
    standard = [r for r in rows if r[1] == "standard"]
    assert (t, "standard", "PoolClientWaiting", "Sample", 1.0, "Count", "pgbouncer:s-2") in rows
    assert not [r for r in standard if r[2] == "PoolServerLogin"]
    assert not [r for r in standard if r[6] == "ee:s-2"]
    # 1 arm-level row, 8 per full EE, 1 per concurrency-only EE, 7 + 6 for the odd ones
    assert len(rows) == 1 + 8 + 2 + 7 + 6


def test_metrics_csv_round_trips(tmp_path: Path, run_dir: Path) -> None:
    frame = read_samples(run_dir / "samples.jsonl")
    write_metrics(frame, tmp_path / "metrics.csv")
    back = read_metrics(tmp_path / "metrics.csv")
    assert len(back) == len(frame)
    assert _rows(back) == _rows(frame)
    # time-ordered, header as the contract says
    assert back["time"].is_monotonic_increasing
    header = (tmp_path / "metrics.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "time,arm,metric,stat,value,unit,source"
