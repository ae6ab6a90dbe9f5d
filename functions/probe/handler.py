"""The probe: how many server connections each arm holds on the database, right now.

Why it exists: CloudWatch's DatabaseConnections is a 1-minute metric, too coarse for a load run
of a minute or two. The run invokes this function every few seconds and writes what it returns
as one line of ``samples.jsonl`` (docs/contracts.md: the aws probe gives only
DatabaseConnections per arm). It connects straight to the cluster as its own role
(``poolbench_probe``), which sees every session's role in ``pg_stat_activity``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg

from functions import contract
from functions.probe.dbsecret import read_secret

COUNT_SQL = (
    "SELECT usename, count(*) FROM pg_stat_activity"
    " WHERE backend_type = 'client backend' GROUP BY usename"
)
"""Client sessions per role; background workers are not connections a pooler could save."""

_connection: psycopg.Connection[tuple[Any, ...]] | None = None


def build_sample(
    rows: Iterable[tuple[str | None, int]], arm_roles: Mapping[str, str], epoch: float
) -> dict[str, Any]:
    """One samples.jsonl line from (role, sessions) rows; arms map to their DB roles."""
    by_role: dict[str, int] = {}
    for role, count in rows:
        key = role or ""
        by_role[key] = by_role.get(key, 0) + int(count)
    stamp = datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "time": stamp,
        "epoch": epoch,
        "arms": {
            arm: {contract.DATABASE_CONNECTIONS: by_role.get(role, 0)}
            for arm, role in arm_roles.items()
        },
        "database": {"connections_total": sum(by_role.values()), "by_role": by_role},
    }


def _connect(env: Mapping[str, str]) -> psycopg.Connection[tuple[Any, ...]]:
    secret = read_secret(env[contract.ENV_DB_SECRET_ARN])
    return psycopg.connect(
        host=env[contract.ENV_DB_HOST],
        port=int(env.get(contract.ENV_DB_PORT, contract.DB_PORT_DEFAULT)),
        dbname=env[contract.ENV_DB_NAME],
        user=secret.username,
        password=secret.password,
        sslmode="require",
        connect_timeout=5,
        autocommit=True,
        application_name="poolbench-probe",
    )


def handler(event: Mapping[str, Any] | None, context: object) -> dict[str, Any]:
    """Lambda entry point: count sessions per role; keeps one connection across invocations."""
    global _connection
    env = os.environ
    arm_roles: dict[str, str] = json.loads(env[contract.ENV_ARM_ROLES])
    for attempt in (1, 2):
        try:
            if _connection is None or _connection.closed:
                _connection = _connect(env)
            rows = _connection.execute(COUNT_SQL).fetchall()
            return build_sample(((r[0], int(r[1])) for r in rows), arm_roles, time.time())
        except psycopg.OperationalError:
            # A connection dropped between samples (scale event, failover): retry once fresh.
            _connection = None
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
