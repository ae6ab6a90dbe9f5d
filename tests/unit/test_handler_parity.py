"""The Node.js handler reads a request exactly as the Python one: the same events give the same
parameters, or the same error message, and the same settings from the same environment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from functions.app.handler import FunctionSettings, RequestParams

REPO = Path(__file__).resolve().parents[2]
NODE = REPO / "node_modules" / ".bin" / "node"
HANDLER = REPO / "functions" / "nodejs" / "index.mjs"

EVENTS: list[dict[str, Any]] = [
    {},
    {"queryStringParameters": None, "body": None},
    {"queryStringParameters": {"sleep_ms": "20", "queries": "3", "hold": "false"}},
    {"body": json.dumps({"sleep_ms": 10, "queries": 0, "hold": "yes"})},
    {"body": json.dumps({"sleep_ms": 10}), "queryStringParameters": {"sleep_ms": "30"}},
    {"body": json.dumps({"sleep_ms": 7.9, "hold": 1})},
    {"body": json.dumps({"queries": True})},
    {"body": json.dumps([1, 2])},
    {"queryStringParameters": {"sleep_ms": " 42 "}},
    {"queryStringParameters": {"hold": "TRUE"}},
    {"queryStringParameters": {"sleep_ms": "abc"}},
    {"queryStringParameters": {"sleep_ms": "-1"}},
    {"queryStringParameters": {"sleep_ms": "60001"}},
    {"queryStringParameters": {"queries": "101"}},
    {"queryStringParameters": {"queries": "1.5"}},
    {"queryStringParameters": {"hold": "maybe"}},
    {"body": "{not json"},
    {"body": json.dumps({"sleep_ms": None})},
]

ENVS: list[dict[str, str]] = [
    {"DB_USER": "u"},
    {"DB_USER": "u", "POOLER_RUN_DIR": "/tmp/ee-1/pooler", "POOLER_PORT": "7000", "ARM": "managed"},
    {
        "DB_USER": "u",
        "DB_HOST": "db",
        "DB_PORT": "5433",
        "DB_PASSWORD": "p",
        "CONNECT_DIRECT": "1",
        "CONNECT_TIMEOUT": "30",
        "FUNCTION_TIMEOUT_MS": "29000",
        "POOLBENCH_EE_ID": "standard-3",
        "DB_NAME": "poolbench",
    },
]

NODE_SCRIPT = """
const m = await import(process.argv[1]);
const { events, envs } = JSON.parse(process.argv[2]);
const params = events.map((e) => {
  try { return { ok: m.paramsFromEvent(e) }; } catch (err) { return { error: err.message }; }
});
const settings = [];
for (const env of envs) settings.push(await m.settingsFromEnv(env));
console.log(JSON.stringify({ params, settings }));
"""


def python_params(event: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"ok": RequestParams.from_event(event).__dict__}
    except ValueError as exc:
        return {"error": str(exc)}


def python_settings(env: dict[str, str]) -> dict[str, Any]:
    s = FunctionSettings.from_env(env)
    return {
        "arm": s.arm,
        "eeId": s.ee_id,
        "host": s.host,
        "port": s.port,
        "dbname": s.dbname,
        "user": s.user,
        "password": s.password,
        "connectTimeoutS": s.connect_timeout_s,
        "functionTimeoutMs": s.function_timeout_ms,
    }


@pytest.fixture(scope="module")
def node_results() -> dict[str, Any]:
    if not NODE.exists() or not (HANDLER.parent / "node_modules" / "pg").exists():
        pytest.fail("the project's Node or the function's pg is missing: run scripts/bootstrap")
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
    done = subprocess.run(
        [
            str(NODE),
            "--input-type=module",
            "-e",
            NODE_SCRIPT,
            str(HANDLER),
            json.dumps({"events": EVENTS, "envs": ENVS}),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize("index", range(len(EVENTS)), ids=lambda i: json.dumps(EVENTS[i])[:60])
def test_same_event_same_params_or_error(node_results: dict[str, Any], index: int) -> None:
    assert node_results["params"][index] == python_params(EVENTS[index])


@pytest.mark.parametrize("index", range(len(ENVS)))
def test_same_environment_same_settings(node_results: dict[str, Any], index: int) -> None:
    node = node_results["settings"][index]
    python = python_settings(ENVS[index])
    if "POOLBENCH_EE_ID" not in ENVS[index]:  # both fall back to the host name
        node.pop("eeId")
        python.pop("eeId")
    assert node == python
