"""The AWS connection path: PgBouncer to the database over TLS (server_tls_sslmode=require),
against a real PostgreSQL with TLS on, and the init check refusing a database without it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.execution_environment import EEInitError, EESettings, ExecutionEnvironment
from local.postgres import PostgresServer, PostgresSettings
from tests.local.conftest import Database

pytestmark = pytest.mark.local


@pytest.fixture(scope="module")
def tls_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    root = Path(tmp_path_factory.mktemp("pg-tls"))
    server = PostgresServer(
        PostgresSettings(data_dir=root / "data", tls=True), tag=uuid.uuid4().hex
    )
    server.start()
    try:
        yield Database(server, {})
    finally:
        server.stop()


def ee_settings(tmp_path: Path, env: dict[str, str], ee_id: str) -> EESettings:
    return EESettings(
        ee_id=ee_id,
        work_dir=tmp_path / ee_id,
        function_env=env,
        tag=uuid.uuid4().hex,
    )


def test_pooler_reaches_the_database_over_tls(tls_database: Database, tmp_path: Path) -> None:
    role = tls_database.fresh_role("standard")
    env = {**tls_database.function_env(role), "SERVER_TLS_SSLMODE": "require"}
    ee = ExecutionEnvironment(ee_settings(tmp_path, env, "tls-1"))
    event = json.dumps({"queryStringParameters": {"sleep_ms": "1000"}}).encode()

    async def scenario() -> tuple[int, list[bool]]:
        await ee.start()
        try:
            call = asyncio.create_task(ee.invoke(event))
            await asyncio.sleep(0.5)
            with tls_database.server.admin_connect() as conn:
                rows = conn.execute(
                    "select s.ssl from pg_stat_ssl s join pg_stat_activity a using (pid)"
                    " where a.usename = %s",
                    (role.name,),
                ).fetchall()
            response = json.loads(await call)
            return int(response["statusCode"]), [bool(r[0]) for r in rows]
        finally:
            await ee.shutdown()

    status, ssl = asyncio.run(scenario())

    assert status == 200
    assert ssl and all(ssl)  # every server connection of the arm's role is TLS


def test_init_fails_when_the_database_refuses_tls(database: Database, tmp_path: Path) -> None:
    role = database.fresh_role("standard")
    env = {**database.function_env(role), "SERVER_TLS_SSLMODE": "require"}

    with pytest.raises(EEInitError, match="does not accept TLS"):
        asyncio.run(ExecutionEnvironment(ee_settings(tmp_path, env, "notls-1")).start())
