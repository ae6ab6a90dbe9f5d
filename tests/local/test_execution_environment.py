"""One real execution environment: real PgBouncer extension, real awslambdaric, real PostgreSQL.

Given/When/Then in each test; the numbers asserted are counted by PostgreSQL itself
(pg_stat_activity) and by the handler's own report of its worker pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from local.execution_environment import (
    EESettings,
    ExecutionEnvironment,
    FunctionError,
    State,
)
from local.postgres import Role
from local.processes import tagged_pids
from tests.local.conftest import Database, SecretsManager
from tests.local.ee_settings import ee_settings as settings

pytestmark = pytest.mark.local
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


def event(**query: Any) -> bytes:
    return json.dumps({"queryStringParameters": {k: str(v) for k, v in query.items()}}).encode()


def body(raw: bytes) -> dict[str, Any]:
    response = json.loads(raw)
    assert response["statusCode"] == 200, response
    return dict(json.loads(response["body"]))


@contextmanager
def peak_connections(database: Database, role: Role) -> Iterator[list[int]]:
    """Samples the role's server connections every 20 ms while the block runs."""
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(database.connections(role))
            time.sleep(0.02)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


async def with_ees(
    all_settings: list[EESettings], body_fn: Callable[[list[ExecutionEnvironment]], Awaitable[T]]
) -> T:
    ees = [ExecutionEnvironment(s) for s in all_settings]
    try:
        await asyncio.gather(*(ee.start() for ee in ees))
        return await body_fn(ees)
    finally:
        await asyncio.gather(*(ee.shutdown() for ee in ees))


def test_managed_ee_runs_requests_in_parallel_within_the_pool_bound(
    database: Database, tmp_path: Path
) -> None:
    # Given one Managed Instances EE with 8 workers and a pool smaller than its worker count
    role = database.fresh_role("managed")
    env = database.function_env(role, "managed", DEFAULT_POOL_SIZE="3")
    ee_settings = settings(tmp_path, env, "managed-1", max_concurrency=8)

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[float, float, set[int], set[int]]:
        ee = ees[0]
        start = time.perf_counter()
        eight = await asyncio.gather(*(ee.invoke(event(sleep_ms=1000)) for _ in range(8)))
        wall_8 = time.perf_counter() - start
        start = time.perf_counter()
        sixteen = await asyncio.gather(*(ee.invoke(event(sleep_ms=1000)) for _ in range(16)))
        wall_16 = time.perf_counter() - start
        return (
            wall_8,
            wall_16,
            {body(r)["worker"] for r in eight},
            {body(r)["worker"] for r in sixteen},
        )

    # When 8 and then 16 concurrent one-second requests arrive
    with peak_connections(database, role) as samples:
        wall_8, wall_16, pids_8, pids_16 = run(with_ees([ee_settings], scenario))

    # Then the 8 workers serve them side by side (one after another would take 8 s and 16 s),
    # 16 in two rounds, through at most DEFAULT_POOL_SIZE connections
    assert len(pids_8) == 8
    assert wall_8 < 4.0
    assert pids_16 == pids_8
    assert 2.0 <= wall_16 < 8.0
    assert 1 <= max(samples) <= 3


def test_four_standard_ees_hold_one_connection_each(database: Database, tmp_path: Path) -> None:
    # Given four standard EEs (one worker, one PgBouncer each) for one arm
    role = database.fresh_role("standard")
    env = database.function_env(role, "standard")
    all_settings = [settings(tmp_path, env, f"standard-{i}") for i in range(4)]

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[int, set[str]]:
        # When each serves one request that holds its connection for 3 s
        calls = [asyncio.create_task(ee.invoke(event(sleep_ms=3000))) for ee in ees]
        seen: list[int] = []
        while not all(c.done() for c in calls) and max(seen, default=0) < 4:
            seen.append(await asyncio.to_thread(database.connections, role))
            await asyncio.sleep(0.02)
        results = await asyncio.gather(*calls)
        seen.append(await asyncio.to_thread(database.connections, role))
        return max(seen), {body(r)["ee"] for r in results}

    holding, served_by = run(with_ees(all_settings, scenario))

    # Then the database sees exactly one server connection per EE
    assert served_by == {f"standard-{i}" for i in range(4)}
    assert holding == 4


def test_extension_registers_for_shutdown_only_and_leaves_nothing(
    database: Database, tmp_path: Path
) -> None:
    role = database.fresh_role("managed")
    ee_settings = settings(tmp_path, database.function_env(role), "ext-1", max_concurrency=2)
    auth_file = ee_settings.work_dir / "pooler" / "userlist.txt"
    pid_file = ee_settings.work_dir / "pooler" / "pgbouncer.pid"

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[list[list[str]], int, int]:
        mode = stat.S_IMODE(auth_file.stat().st_mode)
        return [e.events for e in ees[0].extensions.values()], mode, int(pid_file.read_text())

    events, mode, pgbouncer_pid = run(with_ees([ee_settings], scenario))

    assert events == [["SHUTDOWN"]]
    assert mode == 0o600
    assert not (Path("/proc") / str(pgbouncer_pid)).exists()
    # stopped by its extension on SHUTDOWN, not by the EE's group SIGKILL (which logs nothing)
    pgbouncer_log = (ee_settings.work_dir / "pooler" / "pgbouncer.log").read_text()
    assert pgbouncer_log.rstrip().endswith("got SIGTERM, fast exit")
    assert not auth_file.exists()
    assert not ee_settings.pooler_dir.is_symlink()  # the EE's short link to its pooler folder
    assert tagged_pids(ee_settings.tag) == []


def test_handler_exception_takes_the_error_path_and_the_worker_goes_on(
    database: Database, tmp_path: Path
) -> None:
    role = database.fresh_role("standard")
    ee_settings = settings(tmp_path, database.function_env(role), "error-1")

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[FunctionError, dict[str, Any]]:
        # An event that is not an object makes the real handler raise (no test double).
        with pytest.raises(FunctionError) as failure:
            await ees[0].invoke(b"[]")
        after = body(await ees[0].invoke(event(sleep_ms=0)))
        return failure.value, after

    error, after = run(with_ees([ee_settings], scenario))

    assert error.error_type.startswith("Runtime.") or error.error_type == "Unhandled"
    assert "AttributeError" in json.loads(error.payload)["errorType"]
    assert after["ee"] == "error-1"
    assert after["cold_start"] is False


def test_an_ee_whose_pooler_dies_is_marked_unhealthy(database: Database, tmp_path: Path) -> None:
    role = database.fresh_role("standard")
    ee_settings = settings(tmp_path, database.function_env(role), "dying-1")
    marked: list[str] = []

    async def scenario() -> State:
        ee = ExecutionEnvironment(ee_settings, on_unhealthy=lambda e: marked.append(e.ee_id))
        await ee.start()
        try:
            # When the EE's PgBouncer dies, its extension exits (Lambda would replace the EE)
            pid = int((ee_settings.work_dir / "pooler" / "pgbouncer.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while ee.state is State.READY and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError, match="unhealthy"):
                await ee.invoke(event(sleep_ms=0))
            return ee.state
        finally:
            await ee.shutdown()

    assert run(scenario()) is State.UNHEALTHY
    assert marked == ["dying-1"]
    assert tagged_pids(ee_settings.tag) == []


def test_password_from_secrets_manager_reaches_pooler_and_handler(
    database: Database, secrets_manager: SecretsManager, tmp_path: Path
) -> None:
    """The AWS credential path, with moto's server as Secrets Manager (AWS is not reachable
    here): no DB_PASSWORD anywhere in the EE, yet PgBouncer and the handler both log in."""
    role = database.fresh_role("managed")
    env = {k: v for k, v in database.function_env(role).items() if k != "DB_PASSWORD"}
    env.update(secrets_manager, DB_SECRET_ARN=secrets_manager.for_role(role))
    ee_settings = settings(tmp_path, env, "secret-1", max_concurrency=2)

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[dict[str, Any], list[bytes]]:
        served = body(await ees[0].invoke(event(sleep_ms=0)))
        # every process of the EE: launcher, PgBouncer, runtime and its workers
        environs = [
            Path(f"/proc/{pid}/environ").read_bytes() for pid in tagged_pids(ee_settings.tag)
        ]
        return served, environs

    served, environs = run(with_ees([ee_settings], scenario))

    assert served["query_ms"] and served["ee"] == "secret-1"
    assert len(environs) >= 4
    assert not any(role.password.encode() in e for e in environs)  # in no process's environment
    assert role.password not in (ee_settings.work_dir / "pooler" / "pgbouncer.ini").read_text()


def test_managed_direct_ee_reads_the_secret_and_holds_a_connection_per_slot(
    database: Database, secrets_manager: SecretsManager, tmp_path: Path
) -> None:
    """managed-direct as AWS runs it: no layer, CONNECT_DIRECT=1, the password only in
    Secrets Manager (moto's server). Every slot's process logs in itself."""
    role = database.fresh_role("managed_direct")
    env = database.function_env(role, "managed-direct")
    del env["DB_PASSWORD"]
    env.update(secrets_manager, DB_SECRET_ARN=secrets_manager.for_role(role), CONNECT_DIRECT="1")
    ee_settings = replace(
        settings(tmp_path, env, "managed-direct-1", max_concurrency=4), layer_dir=None
    )

    async def scenario(ees: list[ExecutionEnvironment]) -> list[dict[str, Any]]:
        replies = await asyncio.gather(*(ees[0].invoke(event(sleep_ms=1500)) for _ in range(4)))
        return [body(r) for r in replies]

    with peak_connections(database, role) as samples:
        served = run(with_ees([ee_settings], scenario))

    assert len({r["worker"] for r in served}) == 4
    assert all(r["arm"] == "managed-direct" and r["query_ms"] for r in served)
    assert max(samples) == 4  # one server connection per slot in flight, no pooler between
    assert not (ee_settings.work_dir / "pooler" / "pgbouncer.ini").exists()  # no extension ran


def test_sleep_beyond_the_function_timeout_is_a_400_that_says_why(
    database: Database, tmp_path: Path
) -> None:
    # Given an EE whose function times out after 3 s (the EE gives it FUNCTION_TIMEOUT_MS)
    role = database.fresh_role("standard")
    ee_settings = replace(
        settings(tmp_path, database.function_env(role), "bound-1"), invoke_timeout_s=3.0
    )

    async def scenario(ees: list[ExecutionEnvironment]) -> list[dict[str, Any]]:
        replies = [await ees[0].invoke(event(sleep_ms=ms, queries=1)) for ms in (1000, 1001)]
        return [json.loads(r) for r in replies]

    # When it is asked for the longest sleep it can serve, and for one millisecond more
    at_bound, over = run(with_ees([ee_settings], scenario))

    # Then the first is served and the second refused before it starts, naming the limit
    assert at_bound["statusCode"] == 200
    assert over["statusCode"] == 400
    assert json.loads(over["body"])["error"] == (
        "sleep_ms 1001 is above 1000: the function times out after 3000 ms"
        " (FUNCTION_TIMEOUT_MS) and keeps 2000 ms for connecting and querying"
    )
