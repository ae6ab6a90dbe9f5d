"""summarize() on a real run folder's files and a hand-made dataset holding every series it reads
(API Gateway, Aurora, throttle reasons, a missing CloudWatch value): each figure by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis import dataset
from analysis import requests as request_records
from analysis.faults import fault_outcome
from analysis.locust_results import read_history
from analysis.runfolder import RunFolder
from analysis.summary import summarize
from input_errors import InputError
from tests.analysis.factory import RunSpec, make_run_folder

T0, T1 = "2026-11-22T10:00:10Z", "2026-11-22T10:00:20Z"
Series = list[tuple[str, str, str, str, float | None]]
SERIES: Series = [
    (T0, "api", "Count", "Sum", 100.0),
    (T1, "api", "Count", "Sum", 50.0),
    (T0, "api", "4XXError", "Sum", 2.0),
    (T0, "api", "5XXError", "Sum", 3.0),
    (T0, "api", "Latency", "Average", 12.0),
    (T0, "api", "Latency", "p99", 40.0),
    (T0, "database", "DatabaseConnections", "Maximum", 30.0),
    (T0, "database", "ServerlessDatabaseCapacity", "Maximum", 2.5),
    (T0, "database", "ACUUtilization", "Maximum", 40.0),
    (T0, "managed", "ConcurrentExecutions", "Maximum", 20.0),
    (T0, "managed", "DatabaseConnections", "Maximum", 5.0),
    (T0, "managed", "ExecutionEnvironments", "Maximum", 3.0),
    (T0, "managed", "ExecutionEnvironmentsServing", "Maximum", 2.0),
    (T0, "managed", "Throttles", "Sum", 4.0),
    (T0, "managed", "ConcurrencyThrottles", "Sum", 1.0),
    (T0, "managed", "CPUThrottles", "Sum", None),
    (T0, "managed", "Errors", "Sum", 2.0),
    (T0, "managed", "Duration", "p50", 5000.0),
    (T0, "managed", "Duration", "p99", 5100.0),
    (T0, "managed", "ExecutionEnvironmentConcurrency", "Maximum", 12.0),
    (T0, "managed", "ExecutionEnvironmentConcurrencyLimit", "Maximum", 16.0),
    (T0, "standard", "ConcurrentExecutions", "Maximum", 20.0),
    (T0, "standard", "DatabaseConnections", "Maximum", 20.0),
]


def frame(rows: Series = SERIES) -> pd.DataFrame:
    buffer = dataset.RowBuffer()
    for time, arm, metric, stat, value in rows:
        buffer.add(time, arm, metric, stat, value, "Count", "cloudwatch")
    return buffer.to_frame()


def edit_manifest(run: Path, **changes: Any) -> None:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key == "scenario":
            manifest["scenario"].update(value)
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_every_figure_of_the_summary_from_its_series(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)  # Locust: standard 1000 ok; managed 1000 with 46 failures
    before = sorted(p.name for p in run.iterdir())
    summary = summarize(run, frame=frame(), write=False).to_json()
    assert sorted(p.name for p in run.iterdir()) == before  # write=False writes nothing

    assert (summary["run_id"], summary["target"], summary["status"]) == (
        "2026-11-22T10-00-00Z",
        "local",
        "completed",
    )
    assert summary["command"] == "poolbench run --preset seed"
    assert summary["runtime"] == "python"  # a manifest from before the knob
    assert summary["load_seconds"] == 60.0
    assert summary["failure"] is None
    assert summary["database_peak_connections"] == 30.0
    assert summary["api"] == {
        "requests": 150.0,
        "4xx": 2.0,
        "5xx": 3.0,
        "latency_avg_ms": 12.0,
        "latency_p99_ms": 40.0,
    }
    assert (summary["database_capacity_acu"], summary["database_acu_utilization"]) == (2.5, 40.0)
    assert summary["missing_metrics"] == ["managed CPUThrottles Sum"]
    assert summary["probe"] == {} and summary["faults"] == []
    assert summary["verdict"] == (
        "Managed Instances used 0.25 DB connections per concurrent request; "
        "standard Lambda used 1.00."
    )
    assert summary["database_cost"]["usd_per_hour_at_this_load"] == pytest.approx(2.5 * 0.12)

    standard, managed = summary["arms"]
    assert standard["arm"] == "standard" and managed["arm"] == "managed"
    # 954 successes x 2 queries / 60 s = 31.8 queries/s; x 1 ms = a floor of 0.0318 connections
    expected_managed = {
        "label": "Managed Instances",
        "requests": 1000,
        "failures": 46,
        "successes": 954,
        "failure_rate": 0.046,
        "p50_ms": 5020.0,
        "p95_ms": 5080.0,
        "p99_ms": 5150.0,
        "peak_concurrency": 20.0,
        "peak_execution_environments": 3.0,
        "peak_execution_environments_serving": 2.0,
        "peak_db_connections": 5.0,
        "db_connections_per_concurrent_request": 0.25,
        "queries_per_s": pytest.approx(31.8),
        "seconds_per_query": 0.001,
        "seconds_per_query_source": "assumed (no scenario.query_ms in manifest)",
        "littles_law_floor": pytest.approx(0.0318),
        "throttles": 4.0,
        "peak_throttles_per_s": pytest.approx(4 / 60),  # a CloudWatch minute's sum
        "peak_ee_concurrency": 12.0,
        "ee_concurrency_limit": 16.0,
        "throttle_reasons": {"ConcurrencyThrottles": 1.0, "CPUThrottles": None},
        "errors": 2.0,
        "duration_p50_ms": 5000.0,
        "duration_p99_ms": 5100.0,
        "latency_source": "locust buckets",
    }
    assert {k: managed[k] for k in expected_managed} == expected_managed
    assert managed["cost"]["usd_per_hour_at_this_load"] == pytest.approx(0.321672)
    # 60,000 requests an hour at $0.2/M + 60,000 x 5.0135 s (Locust's mean) x 2 GB x the GB-s price
    assert standard["cost"]["usd_per_hour_at_this_load"] == pytest.approx(
        60_000 / 1e6 * 0.2 + 60_000 * 5.0135 * 2 * 0.0000133334, rel=1e-9
    )
    assert standard["throttles"] is None and standard["throttle_reasons"] == {}
    assert standard["queries_per_s"] == pytest.approx(1000 * 2 / 60)
    assert summary["warnings"][0].startswith("Arm 'managed' was throttled 4 times")
    assert summary["warnings"][1].startswith("No per-request records (requests/)")
    assert len(summary["warnings"]) == 2


def test_a_failed_run_carries_its_error_the_probe_and_the_measured_query_time(
    tmp_path: Path,
) -> None:
    run = make_run_folder(tmp_path)
    probe = {"function": "probe-fn", "samples": 3, "failures": 0}
    edit_manifest(run, status="failed", error="gateway died", probe=probe, scenario={"query_ms": 4})
    summary = summarize(run, frame=frame(), write=False)
    assert summary.failure == "gateway died"
    assert summary.status == "failed"
    assert summary.probe == probe
    managed = summary.arm("managed")
    assert managed.seconds_per_query == 0.004
    assert managed.littles_law_floor == pytest.approx(31.8 * 0.004)
    assert summary.warnings[0] == (
        "The run's status is 'failed', not 'completed': numbers may be partial."
    )


def test_without_queries_or_a_window_there_are_no_rates(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    edit_manifest(run, scenario={"queries": None}, load_started_at=None, started_at=None)
    local_only = [row for row in SERIES if row[1] in ("managed", "standard")]
    summary = summarize(run, frame=frame(local_only), write=False)
    assert summary.load_seconds is None
    assert summary.arm("managed").queries_per_s is None
    assert summary.arm("managed").cost["usd_per_hour_at_this_load"] is None  # no load time
    assert summary.arm("managed").littles_law_floor is None
    assert summary.api == {}
    assert summary.database_capacity_acu is None
    assert summary.database_peak_connections is None


def test_without_a_frame_it_reads_the_samples_and_writes_summary_and_metrics(
    tmp_path: Path,
) -> None:
    run = make_run_folder(tmp_path)
    summary = summarize(run)
    written = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(summary.to_json()))
    assert (run / "metrics.csv").is_file()
    # a second read of the written dataset gives the same summary
    assert summarize(run, write=False).to_json() == summary.to_json()


def test_per_request_records_replace_locust_s_rounded_percentiles(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec(with_requests=True))
    summary = summarize(run, frame=frame(), write=False)
    records = request_records.load_records(RunFolder.open(run))
    assert records is not None
    for arm in summary.arms:
        stats = request_records.latency_stats(records, arm.arm)
        assert (arm.p50_ms, arm.p90_ms, arm.p95_ms, arm.p99_ms, arm.p999_ms) == (
            stats.p50_ms,
            stats.p90_ms,
            stats.p95_ms,
            stats.p99_ms,
            stats.p999_ms,
        )
        assert (arm.min_ms, arm.max_ms, arm.mean_ms) == (stats.min_ms, stats.max_ms, stats.mean_ms)
        assert arm.latency_source == "requests (exact, successful requests)"
        assert arm.p50_ms != arm.p90_ms  # distinct figures, not one copied into the others
    # the fastest successful request: 5000 ms sleep + 1.5 ms connect + 0.8 ms query + 4 ms
    standard = summary.arm("standard")
    assert standard.min_ms == pytest.approx(5006.3, abs=1.0)
    assert standard.cold_starts == 40 and summary.arm("managed").cold_starts == 3  # one per EE
    assert not any("request records" in w for w in summary.warnings)


def test_records_that_miss_requests_are_named(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec(with_requests=True))
    records = run / "requests" / "local-1.csv"
    lines = records.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if ",managed," not in line or "managed-1," not in line]
    records.write_text("".join(kept), encoding="utf-8")
    dropped = len(lines) - len(kept)
    summary = summarize(run, frame=frame(), write=False)
    assert dropped > 0
    assert (
        f"Arm 'managed' has {1000 - dropped} request records but Locust counted 1000: its "
        "percentiles miss requests." in summary.warnings
    )
    assert not any("Arm 'standard' has" in w for w in summary.warnings)


def test_each_fault_is_looked_at_until_the_next_one(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    faults: list[dict[str, Any]] = [
        {"kind": "db-restart", "at_s": 20.0, "at": "2026-11-22T10:00:20+00:00"},
        {"kind": "pooler-kill", "at_s": 40.0, "at": "2026-11-22T10:00:40+00:00"},
    ]
    edit_manifest(run, faults=faults)
    summary = summarize(run, frame=frame(), write=False)
    history = read_history(run / "locust_stats_history.csv")
    assert summary.faults == faults
    for arm in summary.arms:
        assert arm.faults == [
            fault_outcome(history, arm.arm, faults[0], faults[1]["at"]),
            fault_outcome(history, arm.arm, faults[1], None),
        ]
        assert [f["kind"] for f in arm.faults] == ["db-restart", "pooler-kill"]
    (run / "locust_stats_history.csv").unlink()
    assert all(a.faults == [] for a in summarize(run, frame=frame(), write=False).arms)


def test_costs_are_priced_in_the_stack_s_region_with_the_run_s_own_price_file(
    tmp_path: Path,
) -> None:
    run = make_run_folder(tmp_path)
    edit_manifest(run, target="aws", stack={"outputs": {"Region": "xx-test-1"}})
    entry = {"source": "the test", "as_of": "2026-12-01"}
    (run / "prices.json").write_text(
        json.dumps(
            {
                "regions": {
                    "xx-test-1": {
                        "lambda_requests_per_million": {"usd": 1.0, **entry},
                        "lambda_arm64_gb_second": {"usd": 0.0, **entry},
                        "managed_instances_fee_share": {"share": 0.0, **entry},
                        "aurora_serverless_v2_acu_hour": {"usd": 1.0, **entry},
                        "rds_proxy_acu_hour": {"usd": 1.0, **entry},
                        "ec2_on_demand": {"m8g.large": {"usd_per_hour": 1.0, "vcpus": 2, **entry}},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    # the EE count Lambda reports is missing: the EEs that served requests stand in for it
    rows = [r for r in SERIES if r[2] != "ExecutionEnvironments"]
    rows.append((T0, "managed", "ExecutionEnvironmentsServing", "Maximum", 7.0))
    summary = summarize(run, frame=frame(rows), write=False)
    managed = summary.arm("managed").cost
    # 7 EEs x 1 vCPU / 2 vCPU = 4 instances x $1/h, plus 1000 requests in 60 s at $1/M
    assert managed["usd_per_hour_at_this_load"] == pytest.approx(4 + 60_000 / 1e6)
    assert managed["assumptions"][0] == "requests $1.0/M (the test, as of 2026-12-01)"
    assert summary.database_cost["usd_per_hour_at_this_load"] == pytest.approx(2.5)
    assert summary.database_cost["assumptions"][-1] == "2.5 ACU (peak measured)"
    # a local run's figures say they are estimates, first
    local = make_run_folder(tmp_path / "local")
    priced = summarize(local, frame=frame(), write=False)
    assert priced.arm("managed").cost["assumptions"][0] == (
        "estimated from a local run, priced as if on AWS"
    )
    assert priced.database_cost["assumptions"][0] == (
        "estimated from a local run, priced as if on AWS"
    )


def test_an_arm_locust_never_saw_has_zero_requests_and_no_figures(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec(with_requests=True))
    edit_manifest(run, scenario={"arms": ["standard", "managed", "proxy"]})
    summary = summarize(run, frame=frame(), write=False)
    proxy = summary.arm("proxy")
    assert (proxy.requests, proxy.failures, proxy.successes) == (0, 0, 0)
    assert (proxy.p50_ms, proxy.p95_ms, proxy.p99_ms) == (None, None, None)
    assert proxy.queries_per_s is None and proxy.failure_rate is None
    assert "Locust recorded no requests for arm 'proxy'." in summary.warnings
    assert not any("Arm 'proxy' has" in w for w in summary.warnings)  # 0 records, 0 counted


def test_without_records_the_warning_says_the_percentiles_are_locust_s(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    assert (
        "No per-request records (requests/): latency percentiles are Locust's, rounded to "
        "100 ms above 1 s; re-run with this poolbench for exact ones."
    ) in summarize(run, frame=frame(), write=False).warnings


def test_without_a_window_there_is_no_rate_even_with_queries(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    edit_manifest(run, load_started_at=None, started_at=None)
    summary = summarize(run, frame=frame(), write=False)
    assert summary.load_seconds is None
    assert summary.arm("managed").queries_per_s is None
    assert summary.arm("managed").cost["usd_per_hour_at_this_load"] is None  # no load time


def test_arms_come_from_locust_when_the_scenario_names_none(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    edit_manifest(run, scenario={"arms": []})
    assert [a.arm for a in summarize(run, frame=frame(), write=False).arms] == [
        "managed",
        "standard",
    ]


def test_a_run_folder_without_locust_s_stats_says_what_writes_them(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    (run / "locust_stats.csv").unlink()
    with pytest.raises(InputError) as error:
        summarize(run, frame=frame(), write=False)
    assert str(error.value) == (
        f"run folder {run} has no locust_stats.csv: Locust writes it during `poolbench run`"
    )


def test_host_cpu_is_taken_over_the_load_window_or_every_sample_without_one(
    tmp_path: Path,
) -> None:
    run = make_run_folder(tmp_path)  # load from 10:00:00 to 10:01:00
    host: Series = [
        ("2026-11-22T09:59:50Z", "host", "HostCpuPercent", "Average", 10.0),  # before the load
        ("2026-11-22T10:00:10Z", "host", "HostCpuPercent", "Average", 50.0),
        ("2026-11-22T10:00:20Z", "host", "HostCpuPercent", "Average", 70.0),
    ]
    summary = summarize(run, frame=frame(SERIES + host), write=False)
    assert summary.host_cpu is not None
    assert (summary.host_cpu["seconds"], summary.host_cpu["mean_cpu_percent"]) == (2, 60.0)
    assert summary.host_saturated is False
    edit_manifest(run, load_started_at=None, started_at=None)
    unbounded = summarize(run, frame=frame(SERIES + host), write=False)
    assert unbounded.host_cpu is not None
    assert (unbounded.host_cpu["seconds"], unbounded.host_cpu["mean_cpu_percent"]) == (3, 43.3)
    assert summarize(run, frame=frame(), write=False).host_cpu is None


def test_identity_fields_fall_back_when_the_manifest_lacks_them(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    edit_manifest(run, run_id="r-42")
    assert summarize(run, frame=frame(), write=False).run_id == "r-42"
    edit_manifest(run, run_id=None, status=None, command=None)
    bare = summarize(run, frame=frame(), write=False)
    assert (bare.run_id, bare.status, bare.command) == (run.name, "unknown", "")
    edit_manifest(run, runtime="nodejs")
    assert summarize(run, frame=frame(), write=False).runtime == "nodejs"


def test_a_saturated_host_is_a_warning(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path)
    busy: Series = [
        (f"2026-11-22T10:00:{s:02d}Z", "host", "HostCpuPercent", "Average", 100.0)
        for s in range(10, 20)
    ]
    summary = summarize(run, frame=frame(SERIES + busy), write=False)
    assert summary.host_saturated is True
    assert any(w.startswith("Host saturated: CPU was at or above") for w in summary.warnings)
