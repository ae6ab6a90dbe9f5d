"""Real PostgreSQL for the local tests: one server per test module, roles per arm."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local.ports import claim_for_process
from local.postgres import PostgresServer, PostgresSettings, Role
from local.stack import find_pgbouncer, function_environment


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
        """The environment the local stack gives a function (its own builder, the PgBouncer
        it finds), with ``extra`` on top."""
        env = function_environment(
            arm,
            role,
            db_port=self.server.port,
            db_name=self.server.settings.dbname,
            pgbouncer=find_pgbouncer(),
        )
        return {**env, **extra}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    root = Path(tmp_path_factory.mktemp("pg"))
    server = PostgresServer(PostgresSettings(data_dir=root / "data"), tag=uuid.uuid4().hex)
    server.start()
    try:
        yield Database(server, {})
    finally:
        server.stop()


class SecretsManager(dict[str, str]):
    """moto's server as Secrets Manager (AWS is not reachable here). The mapping is the
    environment an EE or a client needs to reach it; create() stores a secret."""

    def client(self) -> Any:
        return boto3.client(
            "secretsmanager",
            endpoint_url=self["AWS_ENDPOINT_URL"],
            region_name=self["AWS_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create(self, name: str, value: dict[str, str]) -> str:
        """The new secret's ARN."""
        return str(self.client().create_secret(Name=name, SecretString=json.dumps(value))["ARN"])

    def for_role(self, role: Role) -> str:
        """An RDS-style secret holding the role's credentials."""
        return self.create(f"pb/{role.name}", {"username": role.name, "password": role.password})


@pytest.fixture(scope="module")
def secrets_manager() -> Iterator[SecretsManager]:
    port = claim_for_process()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield SecretsManager(
            {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "eu-west-1",
                "AWS_DEFAULT_REGION": "eu-west-1",
            }
        )
    finally:
        server.stop()
