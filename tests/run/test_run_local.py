"""`poolbench run` on the local stack, end to end: real stack, real Locust, real report.

Figures asserted come from the run folder the command wrote: Locust's own stats CSV (requests
per arm) and summary.json (peaks the recorder read from pg_stat_activity).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from poolbench.cli import main
from tests.interrupt import interrupt_poolbench

pytestmark = pytest.mark.local


def only_run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def locust_requests(run_dir: Path) -> dict[str, tuple[int, int]]:
    with (run_dir / "locust_stats.csv").open(newline="") as fh:
        return {
            row["Name"]: (int(row["Request Count"]), int(row["Failure Count"]))
            for row in csv.DictReader(fh)
            if row["Name"] != "Aggregated"
        }


def request_records(run_dir: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted((run_dir / "requests").glob("*.csv")):
        with path.open(newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def summary_arms(run_dir: Path) -> dict[str, dict[str, Any]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {arm["arm"]: arm for arm in summary["arms"]}


def test_smoke_run_has_the_seed_shape_and_an_exact_budget(tmp_path: Path) -> None:
    # Given 8 users per arm, a budget of 24 requests per arm, and poolers of 2 connections
    # (so the bound the managed arm shares, 3 EEs x 2, sits below one connection per user
    # even when all 8 users open their first transaction at the same instant)
    argv = ["run", "--preset", "smoke", "--users", "8", "--requests", "24", "--sleep-ms", "300"]
    argv += ["--pool-size", "2"]

    # When the whole run goes through
    code = main([*argv, "--out", str(tmp_path)])

    # Then Locust counted exactly the budget, and the database saw the seed's shape
    assert code == 0
    run_dir = only_run_dir(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["scenario"]["users"] == 8
    assert manifest["versions"]["pgbouncer"].startswith("1.")
    assert manifest["inits"]["standard"]["count"] == 8  # one cold start per user
    assert manifest["inits"]["managed"]["count"] == 3  # ready before traffic
    assert manifest["scenario"]["query_ms"] > 0  # measured by the poolers
    assert locust_requests(run_dir) == {"standard": (24, 0), "managed": (24, 0)}
    arms = summary_arms(run_dir)
    assert arms["standard"]["peak_db_connections"] == 8  # one EE, one connection per user
    assert arms["managed"]["peak_db_connections"] <= 6  # 3 EEs share their 2-connection pools
    # And every request has an exact record: p50 is a latency a request had (not below the
    # minimum, not one of Locust's 10 ms bucket edges), with the handler's own timings
    records = request_records(run_dir)
    for arm in ("standard", "managed"):
        mine = [r for r in records if r["arm"] == arm]
        assert len(mine) == 24, arm
        latencies = sorted(float(r["latency_ms"]) for r in mine)
        assert arms[arm]["min_ms"] == latencies[0] <= arms[arm]["p50_ms"]
        assert arms[arm]["p50_ms"] == latencies[11]  # nearest rank: the 12th of 24
        assert arms[arm]["p50_ms"] % 10 != 0
        assert all(float(r["sleep_ms"]) >= 300 and float(r["connect_ms"]) > 0 for r in mine)
        assert all(float(r["handler_ms"]) < float(r["latency_ms"]) for r in mine)
    assert len({r["ee"] for r in records if r["arm"] == "standard"}) == 8
    assert arms["standard"]["cold_starts"] == 8  # each EE's first request waited for its init
    assert arms["managed"]["cold_starts"] == 0  # its EEs were ready before the load
    report = (run_dir / "report.html").read_text()
    assert "execution environment inits" in report
    assert 'id="chart-latency_cdf"' in report and 'id="chart-breakdown"' in report
    # And the host's CPU was sampled every second of the load, into metrics.csv and the report
    with (run_dir / "metrics.csv").open(newline="") as fh:
        cpu = [float(r["value"]) for r in csv.DictReader(fh) if r["metric"] == "HostCpuPercent"]
    assert len(cpu) >= 3 and all(0 <= v <= 100 for v in cpu) and max(cpu) > 0
    assert json.loads((run_dir / "summary.json").read_text())["host_saturated"] in (True, False)
    assert 'id="chart-host_cpu"' in report
    assert not (run_dir / "stack" / "postgres" / "data").exists()


def test_processes_and_sequential_schedule_keep_the_budget(tmp_path: Path) -> None:
    argv = ["run", "--preset", "smoke", "--requests", "10", "--sleep-ms", "50", "--no-report"]

    assert main([*argv, "--processes", "2", "--out", str(tmp_path / "p")]) == 0
    assert main([*argv, "--schedule", "sequential", "--out", str(tmp_path / "s")]) == 0

    for out in (tmp_path / "p", tmp_path / "s"):
        assert locust_requests(only_run_dir(out)) == {"standard": (10, 0), "managed": (10, 0)}
        # every Locust process's records end up in <run>/requests, each request once
        records = request_records(only_run_dir(out))
        assert sorted(r["arm"] for r in records) == ["managed"] * 10 + ["standard"] * 10
    processes = {
        p.name.split("-")[0] for p in (only_run_dir(tmp_path / "p") / "requests").iterdir()
    }
    assert processes == {"worker"}


def test_sigint_during_load_keeps_the_folder_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--duration", "120", "--out", str(out)]

    def load_started() -> bool:
        runs = list(out.glob("*/locust_stats.csv"))
        return bool(runs) and locust_requests(runs[0].parent).get("standard", (0, 0))[0] > 0

    result = interrupt_poolbench(args, tmp_path / "run.log", ready=load_started)

    assert result.returncode == 130, result.log[-2000:]
    run_dir = only_run_dir(out)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert (run_dir / "locust_stats.csv").exists()
    assert (run_dir / "samples.jsonl").stat().st_size > 0
    assert result.left_after == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--users", "0"], "--users must be at least 1"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--arms", "standard,lambda"], "unknown arm 'lambda'"),
        (["--target", "aws"], "--target aws needs --outputs-file"),
        (["--target", "aws", "--outputs-file", "/nonexistent.json"], "not found"),
        (["--schedule", "sometimes"], "--schedule must be parallel or sequential"),
    ],
)
def test_bad_input_exits_2_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code = main(["run", *extra, "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_malformed_outputs_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text("{not json")

    code = main(["run", "--target", "aws", "--outputs-file", str(outputs), "--out", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"outputs file {outputs}: not valid JSON" in err


def test_sigint_during_stack_start_stops_within_the_bound(tmp_path: Path) -> None:
    # Given a stack whose start takes seconds: 3 managed EEs of 32 workers each
    log = tmp_path / "run.log"
    args = ["run", "--preset", "smoke", "--arms", "managed", "--slots-per-ee", "32"]
    args += ["--out", str(tmp_path / "out")]

    def starting() -> bool:
        return log.exists() and "starting the local stack" in log.read_text()

    result = interrupt_poolbench(args, log, ready=starting)

    assert result.returncode == 130, result.log[-2000:]
    assert "stack up" not in result.log  # it was interrupted while starting
    assert result.stopped_in_s <= 10
    assert result.left_after == []


def test_sigint_reaches_a_run_started_with_sigint_ignored(tmp_path: Path) -> None:
    # Given a run started as a background job of a non-interactive shell (SIGINT ignored)
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--duration", "120", "--out", str(out)]

    def load_started() -> bool:
        return any(out.glob("*/locust_stats.csv"))

    result = interrupt_poolbench(
        args, tmp_path / "run.log", ready=load_started, inherit_sigint_ignored=True
    )

    assert result.returncode == 130, result.log[-2000:]
    assert result.stopped_in_s <= 10
    assert result.left_after == []
