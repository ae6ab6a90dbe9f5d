"""The seed workload as a Lambda handler: connect, query, sleep, query, disconnect.

The same code runs on every arm (functions/contract.py names them) and on both targets; only
the environment differs: through the EE's PgBouncer, or straight to the database or a shared
pooler (CONNECT_DIRECT=1: the proxy, direct and managed-direct arms).
Settings and credentials are read once per worker process at init, as Lambda runs init once per
process (on Managed Instances: once per forked worker).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from functions import contract

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

MAX_SLEEP_MS = 60_000
MAX_QUERIES = 100
# Kept from the function's timeout for connecting, querying and answering: a request may sleep
# for its timeout minus this, so a long sleep is a 400 that says why, never a timeout (a 504).
SLEEP_MARGIN_MS = 2_000


@dataclass(frozen=True)
class FunctionSettings:
    """Where the handler connects and as whom; built once from the function's environment.

    Through the in-EE pooler (the default) the host is the pooler's socket folder and there is
    no password: PgBouncer trusts its own Unix socket (docs/contracts.md), so a worker never
    reads the secret and never imports boto3. Straight to the database or the proxy
    (CONNECT_DIRECT=1) the worker logs in with the role's password."""

    arm: str
    ee_id: str
    host: str
    port: int
    dbname: str
    user: str
    password: str | None
    connect_timeout_s: int = 5
    function_timeout_ms: int | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        read_secret: Callable[[str], str] | None = None,
    ) -> FunctionSettings:
        """Pooler by default; the database itself when the arm says CONNECT_DIRECT=1."""
        c = contract
        direct = env.get(c.ENV_CONNECT_DIRECT, "0") == "1"
        password: str | None = None
        if direct:
            host, port = env[c.ENV_DB_HOST], int(env.get(c.ENV_DB_PORT, c.DB_PORT_DEFAULT))
            secret_arn = env.get(c.ENV_DB_SECRET_ARN)
            if secret_arn:
                password = (read_secret or read_password_from_secrets_manager)(secret_arn)
            elif c.ENV_DB_PASSWORD in env:
                password = env[c.ENV_DB_PASSWORD]
            else:
                raise RuntimeError(f"neither {c.ENV_DB_SECRET_ARN} nor {c.ENV_DB_PASSWORD} is set")
        else:
            # The extension's POOLER_RUN_DIR: where its PgBouncer's socket .s.PGSQL.<port> is.
            host = env.get(c.ENV_POOLER_RUN_DIR, c.POOLER_RUN_DIR_DEFAULT)
            port = int(env.get(c.ENV_POOLER_PORT, c.POOLER_PORT_DEFAULT))
        timeout = env.get(c.ENV_FUNCTION_TIMEOUT_MS)
        return cls(
            arm=env.get(c.ENV_ARM, "unknown"),
            ee_id=env.get(c.ENV_EE_ID)
            or env.get("AWS_LAMBDA_LOG_STREAM_NAME")
            or socket.gethostname(),
            host=host,
            port=port,
            dbname=env.get(c.ENV_DB_NAME, "postgres"),
            user=env[c.ENV_DB_USER],
            password=password,
            connect_timeout_s=int(env.get(c.ENV_CONNECT_TIMEOUT, "5")),
            function_timeout_ms=int(timeout) if timeout else None,
        )

    def sleep_limit(self, context: Any) -> tuple[int, str]:
        """The longest sleep_ms this function can serve, and why. FUNCTION_TIMEOUT_MS (the
        function's configured timeout, set next to it by the stack) gives the same bound on
        every request; without it, the time this invocation has left."""
        if self.function_timeout_ms is not None:
            timeout, source = self.function_timeout_ms, "FUNCTION_TIMEOUT_MS"
        elif hasattr(context, "get_remaining_time_in_millis"):
            timeout, source = int(context.get_remaining_time_in_millis()), "time left"
        else:
            return MAX_SLEEP_MS, f"the handler's cap of {MAX_SLEEP_MS} ms"
        limit = max(0, min(MAX_SLEEP_MS, timeout - SLEEP_MARGIN_MS))
        return limit, (
            f"the function times out after {timeout} ms ({source}) and keeps"
            f" {SLEEP_MARGIN_MS} ms for connecting and querying"
        )


def read_password_from_secrets_manager(secret_arn: str) -> str:
    """The password field of an RDS-style JSON secret; boto3 is in the Lambda runtime."""
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    return str(json.loads(value)["password"])


@dataclass(frozen=True)
class RequestParams:
    """What one request asks for: the seed is sleep_ms=5000, queries=2, hold=true."""

    sleep_ms: int = 5000
    queries: int = 2
    hold: bool = True

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> RequestParams:
        """Query string first, then a JSON body; raises ValueError naming a bad parameter."""
        raw: dict[str, Any] = {}
        body = event.get("body")
        if body:
            try:
                parsed = json.loads(body)
            except json.JSONDecodeError as exc:
                raise ValueError("body is not JSON") from exc
            if isinstance(parsed, dict):
                raw.update(parsed)
        raw.update(event.get("queryStringParameters") or {})
        return cls(
            sleep_ms=_bounded_int(raw, "sleep_ms", cls.sleep_ms, MAX_SLEEP_MS),
            queries=_bounded_int(raw, "queries", cls.queries, MAX_QUERIES),
            hold=_bool(raw, "hold", cls.hold),
        )


def _bounded_int(raw: Mapping[str, Any], name: str, default: int, maximum: int) -> int:
    if name not in raw:
        return default
    try:
        value = int(raw[name])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an integer") from exc
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be between 0 and {maximum}")
    return value


def _bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    if name not in raw:
        return default
    value = str(raw[name]).lower()
    if value in {"1", "true", "yes"}:
        return True
    if value in {"0", "false", "no"}:
        return False
    raise ValueError(f"{name} must be true or false")


class Worker:
    """One worker process's state: its settings and whether it has served a request yet."""

    def __init__(self, settings: FunctionSettings) -> None:
        self.settings = settings
        self.cold = True
        self.ready_at = time.monotonic()  # init's end: a first request that began before it waited

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """Autocommit, so each query is its own transaction and PgBouncer (transaction mode)
        returns the server connection between queries; no prepared statements (PgBouncer 1.18)."""
        s = self.settings
        return psycopg.connect(
            host=s.host,
            port=s.port,
            dbname=s.dbname,
            user=s.user,
            password=s.password,
            connect_timeout=s.connect_timeout_s,
            autocommit=True,
            prepare_threshold=None,
            application_name=f"poolbench-{s.arm}",
        )

    def run(self, params: RequestParams) -> dict[str, Any]:
        """Runs the queries with the sleep split evenly between them (after the first if one).

        The timings (connect, each query, the sleep as slept) go into the response, so the
        load generator can tell where a request's time went."""
        timings: dict[str, Any] = {"connect_ms": 0.0, "query_ms": [], "slept_ms": 0.0}
        if params.queries == 0:
            _timed_sleep(params.sleep_ms / 1000, timings)
            return timings
        pause_s = params.sleep_ms / 1000 / max(params.queries - 1, 1)
        conn = self._timed_connect(timings) if params.hold else None
        try:
            for i in range(params.queries):
                if i > 0:
                    _timed_sleep(pause_s, timings)
                self._query(conn, timings)
            if params.queries == 1:
                _timed_sleep(pause_s, timings)
        finally:
            if conn is not None:
                conn.close()
        return timings

    def _timed_connect(self, timings: dict[str, Any]) -> psycopg.Connection[tuple[Any, ...]]:
        start = time.perf_counter()
        conn = self.connect()
        timings["connect_ms"] += round((time.perf_counter() - start) * 1000, 3)
        return conn

    def _query(
        self, conn: psycopg.Connection[tuple[Any, ...]] | None, timings: dict[str, Any]
    ) -> None:
        own = conn is None
        active = self._timed_connect(timings) if conn is None else conn
        try:
            start = time.perf_counter()
            active.execute("select now()").fetchone()
            timings["query_ms"].append(round((time.perf_counter() - start) * 1000, 3))
        finally:
            if own:
                active.close()


def _timed_sleep(seconds: float, timings: dict[str, Any]) -> None:
    start = time.perf_counter()
    time.sleep(seconds)
    timings["slept_ms"] = round(timings["slept_ms"] + (time.perf_counter() - start) * 1000, 3)


def _response(status: int, body: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Poolbench-Request-Id": request_id},
        "body": json.dumps(body),
    }


_worker: Worker | None = None


def _get_worker() -> Worker:
    global _worker
    if _worker is None:
        _worker = Worker(FunctionSettings.from_env(os.environ))
    return _worker


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway REST proxy (1.0) event in, proxy response out, naming EE and worker."""
    worker = _get_worker()
    request_id = str(getattr(context, "aws_request_id", ""))
    cold, worker.cold = worker.cold, False
    identity = {
        "arm": worker.settings.arm,
        "ee": worker.settings.ee_id,
        "worker": os.getpid(),
        "cold_start": cold,
        # ms from the end of this worker's init to its first request (null after that)
        "init_age_ms": round((time.monotonic() - worker.ready_at) * 1000, 1) if cold else None,
    }
    try:
        params = RequestParams.from_event(event)
        limit, why = worker.settings.sleep_limit(context)
        if params.sleep_ms > limit:
            raise ValueError(f"sleep_ms {params.sleep_ms} is above {limit}: {why}")
    except ValueError as exc:
        return _response(400, {**identity, "error": str(exc)}, request_id)
    start = time.perf_counter()
    try:
        timings = worker.run(params)
    except psycopg.Error as exc:
        logger.exception("database error on %s:%s", worker.settings.host, worker.settings.port)
        message = type(exc).__name__
        return _response(503, {**identity, "error": f"database error: {message}"}, request_id)
    timings["total_ms"] = round((time.perf_counter() - start) * 1000, 3)
    return _response(200, {**identity, **timings, "params": params.__dict__}, request_id)


# Init once per worker process (Lambda's init phase), so a missing credential fails init
# rather than the first request; outside a Lambda runtime (tests) nothing runs at import.
if "AWS_LAMBDA_RUNTIME_API" in os.environ:
    _get_worker()
