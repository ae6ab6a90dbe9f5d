"""The handler refuses a sleep its function cannot finish (#16 item 6), through handler()."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.app import handler as app

ENV = {"DB_USER": "u", "POOLER_RUN_DIR": "/nonexistent", "ARM": "unit"}


@pytest.fixture
def fresh_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The handler's per-process worker, rebuilt from the environment each test sets."""
    for key in ("FUNCTION_TIMEOUT_MS", "CONNECT_DIRECT", "DB_SECRET_ARN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(app, "_worker", None)
    yield monkeypatch
    app._worker = None


class Context:
    """What awslambdaric hands the handler: the request id and the time left."""

    aws_request_id = "req-1"

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def call(sleep_ms: int, context: Any) -> tuple[int, dict[str, Any]]:
    # queries=0: the handler only sleeps, so no database is needed to see the bound.
    event = {"queryStringParameters": {"sleep_ms": str(sleep_ms), "queries": "0"}}
    response = app.handler(event, context)
    return int(response["statusCode"]), dict(json.loads(response["body"]))


def test_sleep_is_bounded_by_function_timeout_minus_margin(
    fresh_worker: pytest.MonkeyPatch,
) -> None:
    fresh_worker.setenv("FUNCTION_TIMEOUT_MS", "2150")  # bound: 2150 - 2000 = 150 ms

    at_bound = call(150, Context(remaining_ms=60_000))
    over = call(151, Context(remaining_ms=60_000))

    assert at_bound[0] == 200
    assert at_bound[1]["params"]["sleep_ms"] == 150
    assert over[0] == 400
    assert over[1]["error"] == (
        "sleep_ms 151 is above 150: the function times out after 2150 ms"
        " (FUNCTION_TIMEOUT_MS) and keeps 2000 ms for connecting and querying"
    )


def test_seed_timeout_refuses_what_used_to_be_accepted(fresh_worker: pytest.MonkeyPatch) -> None:
    fresh_worker.setenv("FUNCTION_TIMEOUT_MS", "29000")  # infra's timeoutSeconds=29

    status, reply = call(30_000, None)

    assert status == 400
    assert reply["error"].startswith("sleep_ms 30000 is above 27000:")


def test_without_the_setting_the_time_left_bounds_the_sleep(
    fresh_worker: pytest.MonkeyPatch,
) -> None:
    status, reply = call(101, Context(remaining_ms=2100))
    ok, _ = call(100, Context(remaining_ms=2100))

    assert (status, ok) == (400, 200)
    assert "after 2100 ms (time left)" in reply["error"]
