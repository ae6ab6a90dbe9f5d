"""Database credentials by Secrets Manager ARN: nothing secret ever sits in an environment."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DbSecret:
    """The fields of an RDS secret (``rds.DatabaseSecret`` attached to a cluster)."""

    username: str
    password: str
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, secret_string: str) -> DbSecret:
        """Parse a SecretString; host and port exist once the secret is attached to a cluster."""
        data: dict[str, Any] = json.loads(secret_string)
        port = data.get("port")
        return cls(
            username=str(data["username"]),
            password=str(data["password"]),
            host=str(data["host"]) if data.get("host") else None,
            port=int(port) if port is not None else None,
        )


def read_secret(secret_arn: str) -> DbSecret:
    """Fetch and parse one secret (boto3 is part of the Lambda Python runtime)."""
    import boto3

    client = boto3.client("secretsmanager")
    return DbSecret.parse(client.get_secret_value(SecretId=secret_arn)["SecretString"])
