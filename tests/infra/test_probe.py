"""The probe's sample shape and the role setup's SQL, without a database or AWS."""

from __future__ import annotations

from typing import Any

import pytest

from functions.probe.dbsecret import DbSecret
from functions.probe.handler import build_sample
from functions.probe.setup_roles import apply_roles, on_event, role_statements

pytestmark = pytest.mark.infra


def test_sample_has_the_contract_shape_with_connections_per_arm() -> None:
    rows = [("poolbench_standard", 12), ("poolbench_managed", 3), ("rdsadmin", 2), (None, 1)]
    sample = build_sample(
        rows,
        {
            "standard": "poolbench_standard",
            "managed": "poolbench_managed",
            "proxy": "poolbench_proxy",
        },
        1795341601.25,
    )
    assert sample["time"] == "2026-11-22T10:00:01.250Z"
    assert sample["epoch"] == 1795341601.25
    # Only DatabaseConnections per arm (docs/contracts.md); an arm with no session reads 0
    assert sample["arms"] == {
        "standard": {"DatabaseConnections": 12},
        "managed": {"DatabaseConnections": 3},
        "proxy": {"DatabaseConnections": 0},
    }
    assert sample["database"]["connections_total"] == 18


def test_role_statements_quote_names_and_passwords() -> None:
    stmts = role_statements("poolbench_x", "p'w\"d", "poolbench", monitor=True, exists=False)
    text = [s.as_string(None) for s in stmts]
    assert text == [
        "CREATE ROLE \"poolbench_x\" WITH LOGIN PASSWORD 'p''w\"d'",
        'GRANT CONNECT ON DATABASE "poolbench" TO "poolbench_x"',
        'GRANT pg_monitor TO "poolbench_x"',
    ]
    again = role_statements("poolbench_x", "new", "poolbench", monitor=False, exists=True)
    assert again[0].as_string(None).startswith('ALTER ROLE "poolbench_x" WITH LOGIN')
    assert len(again) == 2


class _Recorder:
    """Stands in for a psycopg connection: knows which roles exist, records statements."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.statements: list[str] = []

    def execute(self, query: Any, params: tuple[str, ...] | None = None) -> _Recorder:
        self._last = params[0] in self.existing if params else None
        if params is None:
            self.statements.append(query.as_string(None))
        return self

    def fetchone(self) -> tuple[int] | None:
        return (1,) if self._last else None


def test_apply_roles_creates_new_and_updates_existing() -> None:
    conn = _Recorder(existing={"poolbench_standard"})
    secrets = {
        "arn:s": DbSecret("poolbench_standard", "a"),
        "arn:m": DbSecret("poolbench_managed", "b"),
    }
    roles = [
        {"Name": "poolbench_standard", "SecretArn": "arn:s", "Monitor": "false"},
        {"Name": "poolbench_managed", "SecretArn": "arn:m", "Monitor": "false"},
    ]
    names = apply_roles(conn, "poolbench", roles, secrets)  # type: ignore[arg-type]
    assert names == ["poolbench_standard", "poolbench_managed"]
    assert conn.statements[0].startswith('ALTER ROLE "poolbench_standard"')
    assert conn.statements[2].startswith('CREATE ROLE "poolbench_managed"')


def test_delete_keeps_the_roles_and_touches_nothing() -> None:
    event = {
        "RequestType": "Delete",
        "PhysicalResourceId": "poolbench-roles-poolbench",
        "ResourceProperties": {"Database": "poolbench", "Roles": [], "AdminSecretArn": "x"},
    }
    assert on_event(event, None) == {"PhysicalResourceId": "poolbench-roles-poolbench"}


def test_secret_parsing_reads_host_and_port_of_attached_secrets() -> None:
    s = DbSecret.parse('{"username": "u", "password": "p", "host": "h", "port": 5432}')
    assert (s.username, s.password, s.host, s.port) == ("u", "p", "h", 5432)
    bare = DbSecret.parse('{"username": "u", "password": "p"}')
    assert bare.host is None and bare.port is None
