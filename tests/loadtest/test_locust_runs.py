"""Real headless Locust runs, built by `locust_command`, against a real HTTP server.

What is asserted is seen from both ends: Locust's own stats CSV (what the report reads) and the
server's count of what actually arrived.
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from analysis.requests import latency_stats, read_records
from loadtest.presets import LOCUSTFILE, locust_command, resolve_scenario
from loadtest.target import load_target
from tests.loadtest.harness import ArmServer, Arrival, LocustRun, run_locust, write_outputs


@dataclass(frozen=True)
class BudgetRun:
    """One smoke run: 4 users x 2 arms, 30 requests each, every 5th managed request a 500."""

    locust: LocustRun
    counts: dict[str, int]
    peaks: dict[str, int]
    queries: list[dict[str, str]]


@pytest.fixture(scope="module")
def budget_run(arm_server: ArmServer, tmp_path_factory: pytest.TempPathFactory) -> BudgetRun:
    # Given a target with three arms, of which the run narrows to two
    tmp = tmp_path_factory.mktemp("budget")
    outputs = write_outputs(tmp / "outputs.json", arm_server.api_url, "standard,managed,proxy")
    target = load_target(outputs)
    scenario = resolve_scenario(
        "smoke",
        target_arms=target.arms,
        arms="standard,managed",
        users=4,
        requests_per_arm=30,
        sleep_ms=50,
    )
    arm_server.reset()
    arm_server.fail_every = {"managed": 5}
    # When Locust runs the command poolbench would run
    run_dir = tmp / "run"
    run = run_locust(locust_command(scenario, outputs_file=outputs, run_dir=run_dir), run_dir)
    arm_server.fail_every = {}
    return BudgetRun(
        locust=run,
        counts=arm_server.counts(),
        peaks={arm: arm_server.peak(arm) for arm in ("standard", "managed", "proxy")},
        queries=[arrival.query for arrival in arm_server.arrivals],
    )


def test_budget_is_exact_in_stats_and_at_the_server(budget_run: BudgetRun) -> None:
    assert budget_run.locust.returncode == 0, budget_run.locust.stderr[-3000:]
    assert budget_run.locust.requests("standard") == 30
    assert budget_run.locust.requests("managed") == 30
    assert budget_run.counts == {"standard": 30, "managed": 30}


def test_every_arm_has_the_same_users(budget_run: BudgetRun) -> None:
    # 30 requests of 50 ms over 4 closed-loop users: all 4 are in flight together at the start.
    assert budget_run.peaks["standard"] == budget_run.peaks["managed"] == 4


def test_only_the_chosen_arms_run(budget_run: BudgetRun) -> None:
    assert budget_run.peaks["proxy"] == 0
    assert set(budget_run.locust.stats()) == {"standard", "managed", "Aggregated"}


def test_non_2xx_is_a_failure_and_does_not_fail_the_exit_code(budget_run: BudgetRun) -> None:
    assert budget_run.locust.failures("managed") == 6  # requests 5, 10, ..., 30
    assert budget_run.locust.failures("standard") == 0
    failures = (budget_run.locust.run_dir / "locust_failures.csv").read_text(encoding="utf-8")
    assert "500" in failures
    assert budget_run.locust.returncode == 0  # --exit-code-on-error 0: failures are results


def test_scenario_knobs_reach_the_handler(budget_run: BudgetRun) -> None:
    assert {tuple(sorted(query.items())) for query in budget_run.queries} == {
        (("hold", "true"), ("queries", "2"), ("sleep_ms", "50"))
    }


def test_contract_files_are_written(budget_run: BudgetRun) -> None:
    names = {path.name for path in budget_run.locust.run_dir.iterdir()}
    assert {
        "locust_stats.csv",
        "locust_stats_history.csv",
        "locust_failures.csv",
        "locust_exceptions.csv",
    } <= names


def test_processes_keep_the_budget_exact(arm_server: ArmServer, tmp_path: Path) -> None:
    # Given three arms over two worker processes (Locust's dispatcher puts users of one arm
    # unevenly on the workers, so a naive per-worker split would hang or miscount)
    outputs = write_outputs(tmp_path / "outputs.json", arm_server.api_url, "standard,managed,proxy")
    scenario = resolve_scenario(
        "smoke",
        target_arms=("standard", "managed", "proxy"),
        users=3,
        requests_per_arm=20,
        sleep_ms=50,
        processes=2,
    )
    arm_server.reset()
    # When
    run = run_locust(locust_command(scenario, outputs_file=outputs, run_dir=tmp_path), tmp_path)
    # Then
    assert run.returncode == 0, run.stderr[-3000:]
    assert "budget per worker" in run.stderr
    for arm in ("standard", "managed", "proxy"):
        assert run.requests(arm) == 20, arm
        assert arm_server.peak(arm) == 3, arm
    assert arm_server.counts() == {"standard": 20, "managed": 20, "proxy": 20}
    # And every worker wrote its own records, which together hold every request once
    files = sorted((tmp_path / "requests").glob("*.csv"))
    assert [f.name.split("-")[0] for f in files] == ["worker", "worker"]
    rows = _records(tmp_path)
    for arm in ("standard", "managed", "proxy"):
        assert sum(r["arm"] == arm for r in rows) == run.requests(arm) == 20, arm


def test_ramp_doubles_users_at_most_once_per_interval(
    arm_server: ArmServer, tmp_path: Path
) -> None:
    # Given a ramp from 1 to 4 users per arm, doubling every 2 s, for 7 s
    interval = 2.0
    outputs = write_outputs(tmp_path / "outputs.json", arm_server.api_url, "standard,managed")
    scenario = resolve_scenario(
        "ramp",
        target_arms=("standard", "managed"),
        users=4,
        duration_s=7,
        sleep_ms=100,
        ramp_interval_s=int(interval),
        ramp_start=1,
    )
    arm_server.reset()
    # When
    run = run_locust(locust_command(scenario, outputs_file=outputs, run_dir=tmp_path), tmp_path)
    # Then the server saw 1, then 2, then 4 concurrent requests per arm, a step per interval
    assert run.returncode == 0, run.stderr[-3000:]
    arrivals = arm_server.arrivals
    start = min(arrival.time for arrival in arrivals)
    for arm in ("standard", "managed"):
        mine = [arrival for arrival in arrivals if arrival.arm == arm]
        reached_2 = _first_reaching(mine, 2) - start
        reached_3 = _first_reaching(mine, 3) - start
        assert max(arrival.in_flight for arrival in mine) == 4, arm
        assert reached_2 >= 0.75 * interval, arm
        assert reached_3 >= 1.75 * interval, arm
        assert reached_3 - reached_2 >= 0.75 * interval, arm
        # never more than double what was in flight during the preceding (part) interval
        for arrival in mine:
            window = [
                a.in_flight for a in mine if arrival.time - 0.75 * interval <= a.time < arrival.time
            ]
            assert arrival.in_flight <= 2 * max(window, default=1), (arm, arrival)
    assert run.requests("standard") > 0
    assert run.requests("managed") > 0


def _first_reaching(arrivals: list[Arrival], level: int) -> float:
    """When the server first had `level` requests of one arm in flight."""
    return min(arrival.time for arrival in arrivals if arrival.in_flight >= level)


def test_bad_input_on_the_plain_command_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2"]
    run = run_locust([*argv, "--outputs-file", str(missing)], tmp_path)
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert run.returncode == 2
    assert errors == [f"poolbench: error: outputs file {missing}: not found"]


def _records(run_dir: Path) -> list[dict[str, str]]:
    """Every row of every per-process record file, read with the csv module (not pandas)."""
    rows: list[dict[str, str]] = []
    for path in sorted((run_dir / "requests").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def test_every_request_is_recorded_and_agrees_with_locust(budget_run: BudgetRun) -> None:
    # Given the records of a real run with failures (every 5th managed request is a 500)
    run_dir = budget_run.locust.run_dir
    rows = _records(run_dir)
    stats = budget_run.locust.stats()
    for arm in ("standard", "managed"):
        mine = [r for r in rows if r["arm"] == arm]
        # Then the count, the failures and the mean are Locust's own
        assert len(mine) == int(stats[arm]["Request Count"]) == 30
        assert sum(r["ok"] == "0" for r in mine) == int(stats[arm]["Failure Count"])
        mean = statistics.fmean(float(r["latency_ms"]) for r in mine)
        assert mean == pytest.approx(float(stats[arm]["Average Response Time"]), abs=0.001)
        # And the exact percentiles of the analysis are the nearest-rank ones computed here
        ok = sorted(float(r["latency_ms"]) for r in mine if r["ok"] == "1")
        exact = latency_stats(read_records(sorted((run_dir / "requests").glob("*.csv"))), arm)
        assert exact.p50_ms == ok[math.ceil(0.5 * len(ok)) - 1]
        assert exact.p99_ms == ok[math.ceil(0.99 * len(ok)) - 1]
        assert exact.min_ms == ok[0] <= exact.p50_ms
        assert exact.max_ms == ok[-1]
        # And what the server said about each request is kept (EE, worker, status)
        assert {r["ee"] for r in mine if r["ok"] == "1"} == {f"{arm}-1"}
        assert {r["status"] for r in mine} == ({"200", "500"} if arm == "managed" else {"200"})
    assert [p.name.split("-")[0] for p in (run_dir / "requests").glob("*.csv")] == ["local"]
