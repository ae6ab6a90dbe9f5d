"""Host CPU: samples.jsonl's `host` object -> metrics.csv rows -> the saturation mark."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis.collect import collect
from analysis.host import SATURATED_PERCENT
from analysis.report import build_report
from analysis.summary import summarize
from tests.analysis.factory import RunSpec, make_run_folder


def test_cpu_samples_are_in_metrics_csv(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec(with_host=True))
    collect(run)
    metrics = pd.read_csv(run / "metrics.csv")
    host = metrics[metrics["arm"] == "host"]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    for metric, key in (
        ("HostCpuPercent", "cpu_percent"),
        ("StackCpuPercent", "stack_cpu_percent"),
        ("LoadGeneratorCpuPercent", "load_cpu_percent"),
    ):
        rows = host[host["metric"] == metric]
        assert list(rows["value"]) == [s["host"][key] for s in samples], metric
        assert set(rows["unit"]) == {"Percent"} and set(rows["stat"]) == {"Average"}


def test_a_third_of_the_load_at_95_percent_marks_the_host_saturated(tmp_path: Path) -> None:
    # Given 20 of the load's 60 s at 95 % (the factory), the rest at 40 %
    run = make_run_folder(tmp_path, RunSpec(with_host=True))
    summary = summarize(run)
    assert summary.host_saturated is True
    assert summary.host_cpu is not None
    assert summary.host_cpu["saturated_share"] == pytest.approx(20 / 60, abs=0.001)
    assert summary.host_cpu["mean_cpu_percent"] == pytest.approx((20 * 95 + 40 * 40) / 60, 0.01)
    assert any(w.startswith("Host saturated") for w in summary.warnings)
    assert json.loads((run / "summary.json").read_text())["host_saturated"] is True


def test_a_host_below_the_line_is_not_saturated(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec(with_host=True))
    path = run / "samples.jsonl"
    path.write_text(path.read_text().replace('"cpu_percent": 95.0', '"cpu_percent": 89.9'))
    summary = summarize(run, write=False)
    assert SATURATED_PERCENT > 89.9
    assert summary.host_saturated is False
    assert not any(w.startswith("Host saturated") for w in summary.warnings)


def test_no_host_samples_means_unknown_not_false(tmp_path: Path) -> None:
    summary = summarize(make_run_folder(tmp_path, RunSpec()), write=False)
    assert summary.host_saturated is None and summary.host_cpu is None


def test_the_report_charts_host_cpu(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec(with_host=True))
    html = build_report(run).read_text()
    assert 'id="chart-host_cpu"' in html and "Host CPU (saturated)" in html
    assert (run / "charts" / "host_cpu.png").stat().st_size > 5000
