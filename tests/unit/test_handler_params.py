"""The handler's request parameters and settings, checked against the contract in DESIGN.md."""

from __future__ import annotations

import json

import pytest

from functions.app.handler import FunctionSettings, RequestParams


def test_defaults_are_the_seed_request() -> None:
    assert RequestParams.from_event({}) == RequestParams(sleep_ms=5000, queries=2, hold=True)


def test_query_string_beats_body() -> None:
    params = RequestParams.from_event(
        {
            "body": json.dumps({"sleep_ms": 10, "queries": 3}),
            "queryStringParameters": {"sleep_ms": "20", "hold": "false"},
        }
    )
    assert params == RequestParams(sleep_ms=20, queries=3, hold=False)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"sleep_ms": "abc"}, "sleep_ms must be an integer"),
        ({"sleep_ms": "-1"}, "sleep_ms must be between 0 and 60000"),
        ({"queries": "101"}, "queries must be between 0 and 100"),
        ({"hold": "maybe"}, "hold must be true or false"),
    ],
)
def test_bad_parameters_name_themselves(query: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RequestParams.from_event({"queryStringParameters": query})


def test_pooler_socket_by_default_database_when_direct() -> None:
    env = {"DB_HOST": "db", "DB_PORT": "5433", "DB_USER": "u", "DB_PASSWORD": "p"}
    pooled = FunctionSettings.from_env({**env, "POOLER_RUN_DIR": "/tmp/ee-1/pooler"})
    default = FunctionSettings.from_env(env)
    direct = FunctionSettings.from_env({**env, "CONNECT_DIRECT": "1"})
    # libpq reads a host that is a path as the folder of the socket .s.PGSQL.<port>
    assert (pooled.host, pooled.port, pooled.password) == ("/tmp/ee-1/pooler", 6432, None)
    assert (default.host, default.port) == ("/tmp", 6432)
    assert (direct.host, direct.port, direct.password) == ("db", 5433, "p")


def test_secret_arn_beats_password_and_is_read_once_when_direct() -> None:
    reads: list[str] = []

    def read_secret(arn: str) -> str:
        reads.append(arn)
        return "from-secret"

    env = {"DB_USER": "u", "DB_PASSWORD": "plain", "DB_SECRET_ARN": "arn:secret"}
    direct = FunctionSettings.from_env({**env, "CONNECT_DIRECT": "1", "DB_HOST": "db"}, read_secret)
    pooled = FunctionSettings.from_env(env, read_secret=read_secret)
    assert direct.password == "from-secret"
    assert pooled.password is None  # the pooler trusts its socket: no secret, no boto3
    assert reads == ["arn:secret"]


def test_no_credentials_fails_init_when_direct() -> None:
    with pytest.raises(RuntimeError, match="neither DB_SECRET_ARN nor DB_PASSWORD"):
        FunctionSettings.from_env({"DB_USER": "u", "DB_HOST": "db", "CONNECT_DIRECT": "1"})
