"""Exact latency from the per-request records: checked against numpy on the raw file.

The records are the factory's (deterministic, in the shape loadtest/records.py writes); the
expected numbers are computed here independently, with the csv module and numpy's
inverted-CDF percentile (the nearest-rank rule), never with analysis/requests.py.
"""

from __future__ import annotations

import csv
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report
from analysis.requests import breakdown, load_records, per_second
from analysis.runfolder import RunFolder
from analysis.summary import summarize
from tests.analysis.factory import RunSpec, make_run_folder

PERCENTS = {"p50_ms": 50, "p90_ms": 90, "p95_ms": 95, "p99_ms": 99, "p999_ms": 99.9}


@pytest.fixture
def records_run(tmp_path: Path) -> Path:
    return make_run_folder(tmp_path, RunSpec(with_requests=True))


def raw_rows(run: Path) -> list[dict[str, str]]:
    with (run / "requests" / "local-1.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def ok_latencies(run: Path, arm: str) -> np.ndarray:
    return np.array(
        [float(r["latency_ms"]) for r in raw_rows(run) if r["arm"] == arm and r["ok"] == "1"]
    )


@pytest.mark.parametrize("arm", ["standard", "managed"])
def test_summary_percentiles_are_the_exact_ones_of_the_raw_records(
    records_run: Path, arm: str
) -> None:
    # When the run is summarised
    summary = summarize(records_run)
    got = summary.arm(arm)
    # Then every percentile is numpy's nearest rank over the successful requests
    values = ok_latencies(records_run, arm)
    ordered = sorted(values)
    for field, percent in PERCENTS.items():
        # nearest rank in exact arithmetic: numpy's float rank for 99.9 % of 1000 is
        # 999.0000000000001, which would pick the 1000th value instead of the 999th
        rank = math.ceil(Fraction(str(percent)) * len(ordered) / 100)
        assert getattr(got, field) == ordered[rank - 1], field
        if percent != 99.9:
            assert getattr(got, field) == np.percentile(values, percent, method="inverted_cdf")
    assert got.min_ms == values.min() <= got.p50_ms
    assert got.max_ms == values.max()
    assert got.mean_ms == pytest.approx(values.mean())
    assert got.latency_source.startswith("requests")
    # And summary.json carries them
    written = json.loads((records_run / "summary.json").read_text())
    row = next(a for a in written["arms"] if a["arm"] == arm)
    assert row["p999_ms"] == got.p999_ms and row["p90_ms"] == got.p90_ms


def test_managed_failures_are_left_out_of_the_percentiles(records_run: Path) -> None:
    rows = [r for r in raw_rows(records_run) if r["arm"] == "managed"]
    failed = [r for r in rows if r["ok"] == "0"]
    summary = summarize(records_run, write=False)
    assert len(failed) == 46 == summary.arm("managed").failures
    assert summary.arm("managed").requests == len(rows) == 1000
    # the percentiles are over the 954 successes only
    values = ok_latencies(records_run, "managed")
    assert len(values) == 954
    assert summary.arm("managed").p99_ms == float(np.sort(values)[int(np.ceil(0.99 * 954)) - 1])
    assert not any("request records" in w for w in summary.warnings)


def test_missing_records_are_a_warning_not_a_silent_count(records_run: Path) -> None:
    # Given a record file that lost its last 10 rows
    path = records_run / "requests" / "local-1.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-10]) + "\n")
    summary = summarize(records_run, write=False)
    assert any("request records but Locust counted 1000" in w for w in summary.warnings)


def test_a_run_without_records_says_its_percentiles_are_lockusts(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec())
    summary = summarize(run, write=False)
    assert summary.arm("standard").latency_source == "locust buckets"
    assert summary.arm("standard").p50_ms == 5010.0  # the factory's Locust p50
    assert any("No per-request records" in w for w in summary.warnings)


def test_per_second_percentiles_match_an_independent_grouping(records_run: Path) -> None:
    frame = load_records(RunFolder.open(records_run))
    assert frame is not None
    got = per_second(frame, "standard")
    by_second: dict[int, list[float]] = {}
    for r in raw_rows(records_run):
        if r["arm"] == "standard" and r["ok"] == "1":
            end = float(r["start"]) + float(r["latency_ms"]) / 1000
            by_second.setdefault(int(np.floor(end)), []).append(float(r["latency_ms"]))
    assert len(got) == len(by_second)
    seconds = ((got["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()
    for second, count, p50, p99 in zip(
        seconds, got["requests"], got["p50_ms"], got["p99_ms"], strict=True
    ):
        values = np.asarray(by_second[int(second)], dtype="float64")
        assert count == len(values)
        assert p50 == np.percentile(values, 50, method="inverted_cdf")
        assert p99 == np.percentile(values, 99, method="inverted_cdf")


def test_breakdown_parts_add_up_to_the_mean_latency(records_run: Path) -> None:
    frame = load_records(RunFolder.open(records_run))
    assert frame is not None
    for arm in ("standard", "managed"):
        parts = breakdown(frame, arm)
        assert parts is not None
        total = parts["sleep_ms"] + parts["query_ms"] + parts["connect_ms"] + parts["rest_ms"]
        assert total == pytest.approx(ok_latencies(records_run, arm).mean())
    standard, managed = breakdown(frame, "standard"), breakdown(frame, "managed")
    assert standard is not None and managed is not None
    # standard connects through its own pooler each time (1.5 ms), managed's pool is warm
    assert standard["connect_ms"] == pytest.approx(1.5)
    assert managed["connect_ms"] == pytest.approx(0.2)


def test_cold_starts_are_first_requests_that_waited_for_their_init(records_run: Path) -> None:
    # Given: in the factory, the first request per EE is a cold one that began before its
    # init ended (init_age 3 ms < its latency); standard has 40 EEs (users), managed 3
    summary = summarize(records_run, write=False)
    assert summary.arm("standard").cold_starts == 40
    assert summary.arm("managed").cold_starts == 3
    # When a first request began after its worker's init ended (Managed Instances: workers
    # start with the EE), it did not wait: not a cold start
    path = records_run / "requests" / "local-1.csv"
    path.write_text(path.read_text().replace(",1,3.0,", ",1,999999.0,"))
    assert summarize(records_run, write=False).arm("standard").cold_starts == 0


def test_report_has_the_record_charts_and_the_latency_table(records_run: Path) -> None:
    report = build_report(records_run)
    html = report.read_text()
    for name in ("latency_cdf", "latency", "breakdown"):
        assert f'id="chart-{name}"' in html, name
        assert (records_run / "charts" / f"{name}.png").stat().st_size > 5000
    assert "every request&#39;s" in html or "every request's" in html
    summary = summarize(records_run, write=False)
    assert f"{summary.arm('standard').p999_ms:,.1f}" in html
