"""The Node.js function in real EEs: real aws-lambda-ric, real PgBouncer extension, real PostgreSQL.

The numbers asserted are counted by PostgreSQL (pg_stat_activity), by the handler's own report
of the thread that served each request, and by the requests' own timings.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from local.execution_environment import EESettings, ExecutionEnvironment
from local.node_runtime import NodeRuntime
from local.processes import tagged_pids
from tests.local.conftest import Database, SecretsManager
from tests.local.ee_settings import ee_settings as one_ee_settings
from tests.local.test_execution_environment import body, event, peak_connections, run, with_ees

pytestmark = pytest.mark.local


def node_settings(
    tmp_path: Path, env: dict[str, str], ee_id: str, max_concurrency: int | None = None
) -> EESettings:
    node = NodeRuntime().check()
    return one_ee_settings(
        tmp_path,
        env,
        ee_id,
        max_concurrency=max_concurrency,
        node=node,
        code_dir=node.code_dir,
        handler=node.handler,
    )


def test_node_handler_through_its_ees_pgbouncer(database: Database, tmp_path: Path) -> None:
    # Given one standard Node EE: the layer's PgBouncer extension, then aws-lambda-ric
    role = database.fresh_role("standard")
    ee_settings = node_settings(tmp_path, database.function_env(role, "standard"), "node-std-1")

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[list[dict[str, Any]], int]:
        ee = ees[0]
        # When a seed-shaped request holds its connection, and a second one follows
        call = asyncio.create_task(ee.invoke(event(sleep_ms=1500, queries=2)))
        seen = [0]
        while not call.done():
            seen.append(await asyncio.to_thread(database.connections, role))
            await asyncio.sleep(0.05)
        second = await ee.invoke(event(sleep_ms=0, queries=3, hold="false"))
        return [body(await call), body(second)], max(seen)

    (first, second), holding = run(with_ees([ee_settings], scenario))

    # Then it answers with the Python handler's fields, from one runtime thread, through
    # PgBouncer (one server connection: the database never sees the handler itself)
    assert first["arm"] == "standard" and first["ee"] == "node-std-1"
    assert first["cold_start"] is True and second["cold_start"] is False
    assert first["worker"] == second["worker"] and first["worker"].endswith(":0")
    assert len(first["query_ms"]) == 2 and first["connect_ms"] > 0
    assert 1400 <= first["slept_ms"] <= 2500
    assert first["params"] == {"sleep_ms": 1500, "queries": 2, "hold": True}
    assert len(second["query_ms"]) == 3  # hold=false: a client per query
    assert holding == 1
    assert tagged_pids(ee_settings.tag) == []


def test_node_handler_straight_to_the_database_with_the_password(
    database: Database, tmp_path: Path
) -> None:
    # Given the proxy arm's way (CONNECT_DIRECT=1, no extension): pg logs in with the password
    role = database.fresh_role("proxy")
    env = database.function_env(role, "proxy", CONNECT_DIRECT="1")
    ee_settings = replace(node_settings(tmp_path, env, "node-direct-1"), layer_dir=None)

    def application_names() -> list[str]:
        with database.server.admin_connect() as conn:
            rows = conn.execute(
                "select application_name from pg_stat_activity where usename = %s", (role.name,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[dict[str, Any], list[str]]:
        call = asyncio.create_task(ees[0].invoke(event(sleep_ms=800, queries=2)))
        names: list[str] = []
        while not call.done():
            names += await asyncio.to_thread(application_names)
            await asyncio.sleep(0.05)
        return body(await call), names

    result, names = run(with_ees([ee_settings], scenario))

    assert len(result["query_ms"]) == 2
    assert "poolbench-proxy" in names


@pytest.mark.parametrize("max_concurrency", [None, 16], ids=["standard", "managed"])
def test_node_handler_reads_its_password_from_secrets_manager(
    database: Database,
    secrets_manager: SecretsManager,
    tmp_path: Path,
    max_concurrency: int | None,
) -> None:
    """The AWS path of the arms without the in-EE pooler: the password only in a secret, read
    at init (once per worker thread on a managed EE) with the AWS SDK v3, as Lambda's Node.js
    runtime ships it (here a devDependency pinned in the lockfile; the bundle leaves it out).
    Secrets Manager is moto's server (AWS is not reachable here)."""
    role = database.fresh_role("direct")
    env = database.function_env(role, "direct", CONNECT_DIRECT="1")
    del env["DB_PASSWORD"]
    env.update(secrets_manager, DB_SECRET_ARN=secrets_manager.for_role(role))
    env.update(NodeRuntime().threadpool_for(max_concurrency))  # as the stack configures it
    settings = replace(
        node_settings(tmp_path, env, "node-secret", max_concurrency=max_concurrency),
        layer_dir=None,
    )

    async def scenario(ees: list[ExecutionEnvironment]) -> dict[str, Any]:
        return body(await ees[0].invoke(event(sleep_ms=0, queries=2)))

    result = run(with_ees([settings], scenario))

    assert len(result["query_ms"]) == 2 and result["arm"] == "direct"


def test_bad_request_is_a_400_naming_the_parameter(database: Database, tmp_path: Path) -> None:
    role = database.fresh_role("standard")
    ee_settings = node_settings(tmp_path, database.function_env(role), "node-bad-1")

    async def scenario(ees: list[ExecutionEnvironment]) -> dict[str, Any]:
        return dict(json.loads(await ees[0].invoke(event(sleep_ms="abc"))))

    response = run(with_ees([ee_settings], scenario))

    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == "sleep_ms must be an integer"


@pytest.mark.parametrize("slots", [16, 64])
def test_one_managed_node_runtime_serves_its_slots_at_once(
    database: Database, tmp_path: Path, slots: int
) -> None:
    # Given one managed Node EE of N slots: one node process, aws-lambda-ric's worker threads
    role = database.fresh_role("managed")
    env = database.function_env(role, "managed", DEFAULT_POOL_SIZE="3")
    ee_settings = node_settings(tmp_path, env, f"node-managed-{slots}", max_concurrency=slots)

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[list[dict[str, Any]], float, int]:
        ee = ees[0]
        assert ee.runtime_proc is not None
        start = time.perf_counter()
        results = await asyncio.gather(*(ee.invoke(event(sleep_ms=1000)) for _ in range(slots)))
        wall = time.perf_counter() - start
        return [body(r) for r in results], wall, ee.runtime_proc.pid

    # When N one-second seed requests arrive at once
    with peak_connections(database, role) as samples:
        served, wall, pid = run(with_ees([ee_settings], scenario))

    # Then all N complete, side by side: the handler time summed over the requests is N s,
    # so N/2 requests were in flight on average at the least (one at a time would give 1)
    assert len(served) == slots
    busy_s = sum(r["total_ms"] for r in served) / 1000
    assert busy_s >= 0.95 * slots
    assert busy_s / wall >= slots / 2, f"{slots} x 1 s took {wall:.1f} s"
    # ... in one process (threads, not forked workers), several of its worker threads ...
    workers = {r["worker"] for r in served}
    assert {w.split(":")[0] for w in workers} == {str(pid)}
    assert 2 <= len(workers) <= NodeRuntime().workers_per_ee
    # ... sharing the EE's PgBouncer, which holds at most its pool of server connections
    assert 1 <= max(samples) <= 3


@pytest.mark.parametrize(("threadpool", "status"), [(None, 503), ("16", 200)])
def test_a_managed_node_runtimes_polls_hold_libuvs_pool_so_a_scram_login_waits(
    database: Database, tmp_path: Path, threadpool: str | None, status: int
) -> None:
    """What the real client does (local/node_runtime.py): each worker thread's /next poll holds
    a thread of libuv's pool (4 by default, one pool per process), and pg 8.16's SCRAM runs on
    WebCrypto, which queues for that pool: with 8 worker threads polling, a login straight to
    the database (no PgBouncer socket) waits until another invoke frees a thread. Alone, it
    waits out its connect timeout. A pool larger than the worker count lets it through."""
    role = database.fresh_role("direct")
    extra = {"CONNECT_DIRECT": "1", "CONNECT_TIMEOUT": "2"}
    if threadpool:
        extra["UV_THREADPOOL_SIZE"] = threadpool
    env = database.function_env(role, "managed", **extra)
    ee_settings = replace(
        node_settings(tmp_path, env, "node-scram", max_concurrency=16), layer_dir=None
    )

    async def scenario(ees: list[ExecutionEnvironment]) -> dict[str, Any]:
        return dict(json.loads(await ees[0].invoke(event(sleep_ms=0, queries=1))))

    response = run(with_ees([ee_settings], scenario))

    assert response["statusCode"] == status, response
