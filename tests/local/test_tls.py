"""The AWS connection path: PgBouncer to the database over TLS (server_tls_sslmode=require),
against a real PostgreSQL with TLS on, and the init check refusing a database without it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.execution_environment import EEInitError, ExecutionEnvironment
from local.postgres import PostgresServer, PostgresSettings, Role
from tests.local.conftest import Database, SecretsManager
from tests.local.ee_settings import ee_settings

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


def test_pooler_reaches_the_database_over_tls(tls_database: Database, tmp_path: Path) -> None:
    role = tls_database.fresh_role("standard")
    env = {**tls_database.function_env(role), "SERVER_TLS_SSLMODE": "require"}
    ee = ExecutionEnvironment(ee_settings(tmp_path, env, "tls-1"))
    event = json.dumps({"queryStringParameters": {"sleep_ms": "1000"}}).encode()

    async def scenario() -> tuple[int, list[bool]]:
        await ee.start()
        try:
            call = asyncio.create_task(ee.invoke(event))
            rows: list[tuple[object, ...]] = []
            deadline = time.monotonic() + 10
            while not rows and time.monotonic() < deadline:  # the request's server connection
                with tls_database.server.admin_connect() as conn:
                    rows = conn.execute(
                        "select s.ssl from pg_stat_ssl s join pg_stat_activity a using (pid)"
                        " where a.usename = %s",
                        (role.name,),
                    ).fetchall()
                await asyncio.sleep(0.02)
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


def test_the_probe_counts_each_arms_sessions_as_postgresql_does(
    tls_database: Database, secrets_manager: SecretsManager, tmp_path: Path
) -> None:
    """The AWS probe (the only per-arm connection count on AWS) run for real: its handler in a
    real EE under awslambdaric, its secret from moto's Secrets Manager (AWS cannot be reached
    here), TLS to a real PostgreSQL, as on Aurora."""
    import psycopg

    from functions.probe.dbsecret import DbSecret
    from functions.probe.setup_roles import apply_roles

    # the probe's role made by the stack's own role step (pg_monitor: it sees every session)
    probe_role = Role(f"probe_{uuid.uuid4().hex[:6]}", "probe-" + uuid.uuid4().hex)
    with tls_database.server.admin_connect() as conn:
        apply_roles(
            conn,
            tls_database.server.settings.dbname,
            [{"Name": probe_role.name, "SecretArn": "arn:probe", "Monitor": "true"}],
            {"arn:probe": DbSecret(probe_role.name, probe_role.password)},
        )
    a, b = tls_database.fresh_role("std"), tls_database.fresh_role("mgd")
    held: list[psycopg.Connection[tuple[object, ...]]] = []
    try:
        arn = secrets_manager.for_role(probe_role)
        # Given 3 sessions of one arm's role and 1 of the other's
        for role, n in ((a, 3), (b, 1)):
            for _ in range(n):
                held.append(
                    psycopg.connect(
                        host="127.0.0.1",
                        port=tls_database.server.port,
                        user=role.name,
                        password=role.password,
                        dbname=tls_database.server.settings.dbname,
                        sslmode="require",
                    )
                )
        env = {
            **secrets_manager,
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(tls_database.server.port),
            "DB_NAME": tls_database.server.settings.dbname,
            "DB_SECRET_ARN": arn,
            "ARM_ROLES": json.dumps({"standard": a.name, "managed": b.name}),
        }
        probe = ExecutionEnvironment(
            ee_settings(
                tmp_path, env, "probe-1", layer_dir=None, handler="functions.probe.handler.handler"
            )
        )

        async def scenario() -> dict[str, object]:
            await probe.start()
            try:
                return dict(json.loads(await probe.invoke(b"{}")))
            finally:
                await probe.shutdown()

        sample = asyncio.run(scenario())
    finally:
        for conn in held:
            conn.close()

    # Then its counts are PostgreSQL's, per arm, and its own session is counted apart
    assert sample["arms"] == {
        "standard": {"DatabaseConnections": 3},
        "managed": {"DatabaseConnections": 1},
    }
    by_role = sample["database"]["by_role"]  # type: ignore[index]
    assert by_role[probe_role.name] == 1
