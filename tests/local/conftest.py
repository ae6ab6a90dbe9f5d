"""Real PostgreSQL for the local tests: one server per test module, roles per arm."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.postgres import PostgresServer, PostgresSettings, Role


class Database:
    """The server plus its arm roles, as the tests use them."""

    def __init__(self, server: PostgresServer, roles: dict[str, Role]) -> None:
        self.server = server
        self.roles = roles

    def fresh_role(self, arm: str) -> Role:
        """A role no other test has used, so its connection count starts at zero."""
        name = f"{arm}_{uuid.uuid4().hex[:6]}"
        role = self.server.create_roles([name])[name]
        self.roles[name] = role
        return role

    def connections(self, role: Role) -> int:
        return self.server.connections_by_role().get(role.name, 0)

    def function_env(self, role: Role, arm: str = "test", **extra: str) -> dict[str, str]:
        return {
            "ARM": arm,
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(self.server.port),
            "DB_NAME": self.server.settings.dbname,
            "DB_USER": role.name,
            "DB_PASSWORD": role.password,
            "PGBOUNCER_BIN": "/usr/sbin/pgbouncer",
            "SERVER_TLS_SSLMODE": "disable",
            **extra,
        }


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    root = Path(tmp_path_factory.mktemp("pg"))
    server = PostgresServer(PostgresSettings(data_dir=root / "data"), tag=uuid.uuid4().hex)
    server.start()
    try:
        yield Database(server, {})
    finally:
        server.stop()
