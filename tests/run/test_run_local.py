"""`poolbench run` on the local stack, end to end: real stack, real Locust, real report.

Figures asserted come from the run folder the command wrote: Locust's own stats CSV (requests
per arm) and summary.json (peaks the recorder read from pg_stat_activity).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from poolbench.cli import main
from tests.interrupt import interrupt_poolbench

pytestmark = [pytest.mark.local, pytest.mark.slow]  # `poolbench run` end to end, or a long bench


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
    assert 1 <= arms["managed"]["peak_db_connections"] <= 6  # 3 EEs share 2-connection pools
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
    # Every Locust process wrote the EEs that served it (workers lose --csv: --ees-prefix),
    # and a sequential run keeps each arm's file
    assert len(list(only_run_dir(tmp_path / "p").glob("locust_ees-*.jsonl"))) == 2
    sequential = sorted(p.name for p in only_run_dir(tmp_path / "s").glob("locust_ees-*.jsonl"))
    assert sorted(name.rsplit("-", 1)[1] for name in sequential) == [
        "managed.jsonl",
        "standard.jsonl",
    ]
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
    # Requests the stop cut off are counted in one line, not one error line each.
    assert "execution environment shut down" not in result.log
    assert result.log.count("cut off") <= 1
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


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("F", "--out {tmp}/F is a file; name a folder"),
        ("F/runs", "--out {tmp}/F/runs cannot be created: {tmp}/F is a file"),
        ("/proc/poolbench/runs", "--out /proc/poolbench/runs cannot be created"),
    ],
)
def test_bad_out_folder_exits_2_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str, message: str
) -> None:
    (tmp_path / "F").write_text("a file where a folder should be")

    code = main(["run", "--preset", "smoke", "--out", str(tmp_path / out)])

    err = capsys.readouterr().err
    assert code == 2
    assert message.format(tmp=tmp_path) in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["F"]
    assert not Path("/proc/poolbench").exists()


def test_users_beyond_postgresql_limit_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--users", "100000", "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert "--users 100,000 x 2 arms" in err
    assert "max_connections 400,050" in err
    assert "PostgreSQL's limit of 262,121" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--outputs-file", "{tmp}/nodir/outputs.json"], "folder {tmp}/nodir does not exist"),
        (["--outputs-file", "{tmp}"], "--outputs-file {tmp} is a folder; name a file"),
        (["--run-dir", "{tmp}/F"], "--run-dir {tmp}/F is a file; name a folder"),
        (["--run-dir", "{tmp}/F/stack"], "--run-dir {tmp}/F/stack cannot be created"),
        (["--max-connections", "300000"], "PostgreSQL's limit of 262,121"),
    ],
)
def test_local_up_bad_paths_exit_2_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "F").write_text("a file where a folder should be")
    argv = [a.format(tmp=tmp_path) for a in extra]
    if "--run-dir" not in argv:
        argv += ["--run-dir", str(tmp_path / "stack")]

    code = main(["local", "up", *argv])

    err = capsys.readouterr().err
    assert code == 2
    assert message.format(tmp=tmp_path) in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["F"]


def test_malformed_outputs_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text("{not json")

    code = main(["run", "--target", "aws", "--outputs-file", str(outputs), "--out", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"outputs file {outputs}: not valid JSON" in err


def test_a_run_over_the_failure_threshold_exits_1_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a standard arm whose account limit (1) is below its 4 users: Lambda throttles,
    # API Gateway answers 500, Locust counts failures
    argv = ["run", "--preset", "smoke", "--requests", "12", "--sleep-ms", "300"]
    argv += ["--concurrency-limit", "1", "--out", str(tmp_path)]

    code = main(argv)

    # Then the run failed (exit 1), the manifest says why, the CLI prints it above the table
    printed = capsys.readouterr()
    assert code == 1, printed.err
    run_dir = only_run_dir(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    standard_requests, standard_failures = locust_requests(run_dir)["standard"]
    assert standard_failures > 0
    assert manifest["status"] == "failed"
    assert manifest["failure_threshold"] == 0.01
    assert manifest["error"].startswith(
        f"arm standard: {standard_failures} of {standard_requests} requests failed"
    )
    assert "HTTPError('500 Server Error" in manifest["error"]
    assert printed.out.index("run failed: arm standard:") < printed.out.index("p50")
    assert locust_requests(run_dir)["managed"] == (12, 0)  # the other arm was fine
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["failure"] == manifest["error"]
    # EEs counted from the responses: one standard EE (the limit), the managed arm's 3 at most
    arms = summary_arms(run_dir)
    assert arms["standard"]["peak_execution_environments_serving"] == 1
    assert 1 <= arms["managed"]["peak_execution_environments_serving"] <= 3


def test_a_sleep_longer_than_the_local_function_timeout_is_refused_before_the_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from local.execution_environment import EESettings

    timeout_s = EESettings.invoke_timeout_s
    limit_ms = int(timeout_s * 1000) - 1000
    sleep_ms = limit_ms + 500
    code = main(["run", "--preset", "smoke", "--sleep-ms", str(sleep_ms), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        f"poolbench: error: --sleep-ms {sleep_ms} exceeds the local stack's function timeout of "
        f"{timeout_s:g} s minus a 1000 ms margin ({limit_ms} ms): lower --sleep-ms, or use "
        "--target aws with a longer -c timeoutSeconds"
    ]
    assert list(tmp_path.iterdir()) == []  # nothing started


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


def test_throttles_are_counted_in_the_summary_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # 3 managed EEs x 4 slots for 30 users: most requests find no free slot.
    argv = ["run", "--preset", "smoke", "--arms", "managed", "--users", "30", "--requests", "60"]
    argv += ["--sleep-ms", "500", "--slots-per-ee", "4", "--max-ees", "3"]
    argv += ["--max-failure-rate", "1"]  # the throttles are what this run is for

    assert main([*argv, "--out", str(tmp_path)]) == 0

    run_dir = only_run_dir(tmp_path)
    requests, failures = locust_requests(run_dir)["managed"]
    assert requests == 60 and failures > 0
    throttles = summary_arms(run_dir)["managed"]["throttles"]
    assert throttles == failures  # every failure was a throttle, and the summary says so
    logged = [r.getMessage() for r in caplog.records]
    assert f"throttled requests (answered 500): managed {failures:,}" in logged
    assert "was throttled" in capsys.readouterr().out  # under the closing table


def test_a_run_without_failures_prints_no_error_line(tmp_path: Path) -> None:
    # A timed run ends with requests still in flight (9 s each, cut at 4 s): they are the
    # run's own end, not failures, so one line counts them, not one error line each. Real
    # stderr, not pytest's. (No request finished, so the run itself is failed: exit 1.)
    argv = ["run", "--preset", "smoke", "--users", "4", "--duration", "4", "--sleep-ms", "9000"]
    argv += ["--no-report", "--out", str(tmp_path)]

    done = subprocess.run(
        [sys.executable, "-m", "poolbench.cli", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1, done.stderr[-2000:]
    assert "no successful request" in done.stderr
    assert all(failures == 0 for _, failures in locust_requests(only_run_dir(tmp_path)).values())
    assert "execution environment shut down" not in done.stderr
    assert "Error" not in done.stderr, done.stderr
    cut_off = [line for line in done.stderr.splitlines() if "cut off" in line]
    assert len(cut_off) == 1, done.stderr
    assert re.search(r"stopped, cut off: .*standard [1-4]\b", cut_off[0]), cut_off


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    # Lines every second (the 5 s default shortened, so the stack's start of 12 managed EEs
    # gets some however fast the machine); the load runs 11 s.
    argv = ["run", "--preset", "smoke", "--arms", "managed", "--min-ees", "12", "--max-ees", "12"]
    argv += ["--users", "4", "--duration", "11", "--sleep-ms", "500", "--no-report"]

    every_second = (
        "import sys; import poolbench.progress as p; p.PLAIN_EVERY_S = 1.0;"
        " from poolbench.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", every_second, *argv, "--out", str(tmp_path)],
        check=False,
        capture_output=True,  # a pipe: not a terminal
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    starting = [line for line in lines if re.fullmatch(r"starting the local stack: \d+ s", line)]
    load = [line for line in lines if re.fullmatch(r"load managed: \d+ s, \d+/11 s", line)]
    assert starting, done.stderr
    assert len(load) >= 8, done.stderr  # one a second over 11 s
    assert lines.index(starting[-1]) < lines.index(load[0])


def test_run_folder_is_printed_without_number_colouring(tmp_path: Path) -> None:
    # FORCE_COLOR: rich colours as on a terminal; the folder's digits must stay plain text.
    argv = ["run", "--preset", "smoke", "--arms", "managed", "--users", "1", "--requests", "2"]
    argv += ["--sleep-ms", "0", "--no-report", "--out", str(tmp_path)]

    done = subprocess.run(
        [sys.executable, "-m", "poolbench.cli", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FORCE_COLOR": "1", "COLUMNS": "200"},
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "\x1b[" in done.stderr  # colour is on (the progress bar)
    assert f"run folder: {only_run_dir(tmp_path)}\n" in done.stderr
