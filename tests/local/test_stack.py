"""The local stack end to end: function models behind the gateway, counted by PostgreSQL.

Each scenario drives real HTTP through the gateway into real EEs and reads the figures the
metrics recorder took from pg_stat_activity and the function models, at 1 s resolution.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.function_models import FunctionModel
from local.settings import (
    ManagedSettings,
    PoolerSettings,
    ProxySettings,
    StackSettings,
    StandardSettings,
)
from local.stack import StackRunner, running_stack
from tests.interrupt import interrupt_poolbench
from tests.local.http import fire, statuses

pytestmark = pytest.mark.local


def settle_one_sample(runner: StackRunner) -> None:
    """Waits for the recorder's next whole-second sample, so peaks include the last requests."""
    assert runner.stack.recorder is not None
    runner.call(runner.stack.recorder.next_sample(), timeout=10)


def peak(runner: StackRunner, arm: str, metric: str) -> int:
    assert runner.stack.recorder is not None
    return runner.stack.recorder.peaks.get(arm, {}).get(metric, 0)


def model(runner: StackRunner, arm: str) -> FunctionModel:
    return runner.stack.models[arm]


def ee_count(runner: StackRunner, arm: str, *, ready: bool = False) -> int:
    """How many EEs the arm has (or has ready), read on the stack's loop, where they change."""
    m = model(runner, arm)
    return runner.read(lambda: len(m.ready_ees()) if ready else len(m.ees))


def total(runner: StackRunner, arm: str, counter: str) -> int:
    m = model(runner, arm)
    return runner.read(lambda: m.counters.total[counter])


def wait_until(predicate: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.mark.slow
def test_standard_arm_runs_one_ee_and_one_connection_per_concurrent_request(
    tmp_path: Path,
) -> None:
    with running_stack(StackSettings(run_dir=tmp_path, arms=("standard",))) as runner:
        url = runner.stack.api_url + "standard"

        # When 50 requests arrive at once, each holding its connection for 1 s
        first = fire(url, 50, sleep_ms=1000)
        settle_one_sample(runner)
        ees_after_first = ee_count(runner, "standard")
        cold_after_first = total(runner, "standard", "ColdStarts")

        # And a second identical wave follows
        second = fire(url, 50, sleep_ms=1000)
        settle_one_sample(runner)

        # Then each request had its own EE and its own server connection, and the second
        # wave reused the warm EEs
        assert statuses(first) == {200: 50}
        assert statuses(second) == {200: 50}
        assert ees_after_first == 50
        assert len({r.body["ee"] for r in first}) == 50
        assert len({r.body["ee"] for r in second}) == 50  # a busy EE is never handed another
        assert cold_after_first == 50
        # the function's init ran in every new EE, and never again in a warm one
        assert all(r.body["cold_start"] for r in first)
        assert not any(r.body["cold_start"] for r in second)
        assert runner.read(model(runner, "standard").init_summary)["count"] == 50
        assert total(runner, "standard", "ColdStarts") == 50
        assert ee_count(runner, "standard") == 50
        assert peak(runner, "standard", "DatabaseConnections") == 50
        assert peak(runner, "standard", "ConcurrentExecutions") == 50


@pytest.mark.slow
def test_managed_arm_shares_poolers_then_throttles_and_scales_out(tmp_path: Path) -> None:
    # Given 3 EEs x 16 slots, pools of 3 server connections each; a scaler that targets full
    # slots and reacts in 0.5 s
    managed = ManagedSettings(slots_per_ee=16, min_ees=3, target_utilisation=1.0, scale_delay_s=0.5)
    pooler = PoolerSettings(default_pool_size=3)
    settings = StackSettings(run_dir=tmp_path, arms=("managed",), managed=managed, pooler=pooler)
    with running_stack(settings) as runner:
        url = runner.stack.api_url + "managed"

        # When 48 requests arrive at once: every slot busy, none throttled
        fit = fire(url, 48, sleep_ms=1000)
        settle_one_sample(runner)
        peak_db_48 = peak(runner, "managed", "DatabaseConnections")

        # When 100 arrive at once: the 52 beyond the 48 slots are throttled (500)
        burst = fire(url, 100, sleep_ms=1000)
        throttled = total(runner, "managed", "Throttles")

        # Then the scaler adds EEs, and a later wave of 100 succeeds entirely
        wait_until(lambda: ee_count(runner, "managed", ready=True) >= 7, 30)
        later = fire(url, 100, sleep_ms=1000)

    assert statuses(fit) == {200: 48}
    assert len({r.body["ee"] for r in fit}) == 3
    assert 3 <= peak_db_48 <= 9, peak_db_48  # 3 EEs sharing pools of 3; never 48
    assert statuses(burst) == {200: 48, 500: 52}
    assert all(r.body == {"message": "Internal server error"} for r in burst if r.status == 500)
    assert throttled == 52
    assert statuses(later) == {200: 100}


@pytest.mark.slow
def test_direct_arms_hold_one_db_connection_per_concurrent_request(tmp_path: Path) -> None:
    # Given both arms without a pooler: standard EEs, and 3 managed EEs x 16 slots
    settings = StackSettings(
        run_dir=tmp_path,
        arms=("direct", "managed-direct"),
        managed=ManagedSettings(slots_per_ee=16, min_ees=3),
    )
    with running_stack(settings) as runner:
        # When 30 warm EEs of direct (a first wave started them: cold starts take turns, so
        # that wave's requests do not all overlap) and 48 slots of managed-direct each get a
        # request at once, holding its connection for 2 s
        fire(runner.stack.api_url + "direct", 30, sleep_ms=1000)
        direct = fire(runner.stack.api_url + "direct", 30, sleep_ms=2000)
        managed = fire(runner.stack.api_url + "managed-direct", 48, sleep_ms=2000)
        settle_one_sample(runner)
        ees = {arm: model(runner, arm).ees for arm in ("direct", "managed-direct")}
        extensions = runner.read(
            lambda: sum(len(ee.extension_procs) for group in ees.values() for ee in group.values())
        )

        # Then no EE ran an extension, and PostgreSQL saw one connection per request in flight
        assert statuses(direct) == {200: 30}
        assert statuses(managed) == {200: 48}
        assert extensions == 0
        assert len({r.body["ee"] for r in direct}) == 30
        assert len({r.body["ee"] for r in managed}) == 3  # 3 EEs x 16 slots, all busy
        assert len({r.body["worker"] for r in managed}) == 48  # a process per slot
        assert peak(runner, "direct", "ConcurrentExecutions") == 30
        assert peak(runner, "direct", "DatabaseConnections") == 30
        assert peak(runner, "managed-direct", "ConcurrentExecutions") == 48
        assert peak(runner, "managed-direct", "DatabaseConnections") == 48


@pytest.fixture(scope="module")
def three_arms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackRunner]:
    settings = StackSettings(
        run_dir=tmp_path_factory.mktemp("three-arms"),
        arms=("standard", "managed", "proxy"),
        proxy=ProxySettings(pool_size=5),
    )
    with running_stack(settings) as runner:
        yield runner


def test_proxy_arm_opens_at_most_the_shared_pool(three_arms: StackRunner) -> None:
    replies = fire(three_arms.stack.api_url + "proxy", 50, sleep_ms=1000)
    settle_one_sample(three_arms)

    assert statuses(replies) == {200: 50}
    assert len({r.body["ee"] for r in replies}) == 50
    assert peak(three_arms, "proxy", "ConcurrentExecutions") == 50
    assert 1 <= peak(three_arms, "proxy", "DatabaseConnections") <= 5


@pytest.mark.parametrize("arm", ["standard", "managed", "proxy"])
def test_apachebench_gets_100_good_responses(three_arms: StackRunner, arm: str) -> None:
    url = f"{three_arms.stack.api_url}{arm}?sleep_ms=20"
    out = subprocess.run(
        ["ab", "-l", "-q", "-c", "20", "-n", "100", url], capture_output=True, text=True, check=True
    ).stdout

    complete = re.search(r"Complete requests:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    assert complete and int(complete.group(1)) == 100, out
    assert "Non-2xx responses" not in out, out
    # -l: bodies vary in length (EE ids, timings); without it ab counts them as "Length" failed.
    assert failed and failed.group(1) == "0", out


def test_a_sleep_longer_than_the_function_timeout_is_a_400(three_arms: StackRunner) -> None:
    # The local functions time out after 29 s, as the AWS ones (FUNCTION_TIMEOUT_MS=29000).
    replies = fire(three_arms.stack.api_url + "standard", 1, sleep_ms=27001)
    assert replies[0].status == 400
    assert replies[0].body["error"].startswith("sleep_ms 27001 is above 27000: ")


def test_unknown_path_is_a_json_404(three_arms: StackRunner) -> None:
    replies = fire(three_arms.stack.api_url + "nonexistent", 1)
    assert replies[0].status == 404
    assert "/standard" in replies[0].body["message"]


def test_sigint_stops_local_up_and_leaves_nothing(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    args = ["local", "up", "--outputs-file", str(outputs), "--run-dir", str(tmp_path / "run")]

    result = interrupt_poolbench(args, tmp_path / "local-up.log", ready=outputs.exists)

    assert result.returncode == 0, result.log
    assert result.running_before > 0  # PostgreSQL, 3 managed EEs: they were running
    assert result.stopped_in_s < 10
    assert result.left_after == []


def test_metrics_endpoint_serves_the_latest_sample(three_arms: StackRunner) -> None:
    settle_one_sample(three_arms)
    replies = fire(three_arms.stack.api_url + "_poolbench/metrics", 1)

    sample = replies[0].body
    assert set(sample["arms"]) == {"standard", "managed", "proxy"}
    assert sample["arms"]["managed"]["ExecutionEnvironments"] == 3
    assert sample["arms"]["managed"]["ExecutionEnvironmentConcurrencyLimit"] == 16
    assert "ExecutionEnvironmentConcurrencyLimit" not in sample["arms"]["standard"]
    assert sample["arms"]["proxy"]["ees"]["proxy-pooler"]["pool"]["sv_active"] >= 0
    # Each managed EE's own PgBouncer, read over its Unix socket (it has no TCP listener)
    assert all("pool" in ee for ee in sample["arms"]["managed"]["ees"].values()), sample


@pytest.mark.slow
def test_idle_environments_are_reaped_and_scaled_in(tmp_path: Path) -> None:
    # Given a 2 s idle timeout for standard EEs and a 1 s lull before managed scale-in
    settings = StackSettings(
        run_dir=tmp_path,
        arms=("standard", "managed"),
        standard=StandardSettings(idle_timeout_s=2.0),
        managed=ManagedSettings(
            slots_per_ee=4, min_ees=2, scale_delay_s=0.0, scale_down_after_s=1.0
        ),
    )
    with running_stack(settings) as runner:
        # When a burst needs more EEs than either arm keeps idle
        standard = fire(runner.stack.api_url + "standard", 6, sleep_ms=500)
        standard_ees = model(runner, "standard").ees
        pids = runner.read(
            lambda: [
                proc.pid
                for ee in standard_ees.values()
                for proc in (ee.runtime_proc, *ee.extension_procs)
                if proc is not None
            ]
        )
        managed = fire(runner.stack.api_url + "managed", 8, sleep_ms=1500)
        # (inits only ever grow: a third EE was started, whenever the scale-in came)
        inits = model(runner, "managed").init_summary
        wait_until(lambda: (runner.read(inits)["count"] or 0) > 2, 15)

        # Then, once idle, standard EEs are reaped and managed shrinks back to its minimum
        wait_until(lambda: ee_count(runner, "standard") == 0, 15)
        wait_until(lambda: ee_count(runner, "managed") == 2, 30)

        assert statuses(standard) == {200: 6}
        assert statuses(managed) == {200: 8}  # 2 EEs x 4 slots: all fit
        assert len(pids) == 12  # 6 EEs: a runtime and an extension each
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 5)
