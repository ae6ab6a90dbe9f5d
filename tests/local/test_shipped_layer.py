"""The shipped layer in a real EE: its bash launcher, its own Python and boto3, under each runtime.

On AWS the Node.js runtime (nodejs24.x, minimal Amazon Linux 2023) has no Python, and the Python
runtime has its own, with its own PYTHONPATH. Here the EE's function environment has no python3
on PATH and a PYTHONPATH whose boto3 cannot load; the extension must still read its password
from Secrets Manager (moto's server: AWS is not reachable here), start PgBouncer, and serve the
function (real aws-lambda-ric / awslambdaric, real PostgreSQL) through it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from local.execution_environment import EESettings, ExecutionEnvironment
from local.node_runtime import NodeRuntime
from local.processes import tagged_pids
from tests.local.conftest import Database, SecretsManager
from tests.local.ee_settings import ee_settings
from tests.local.test_execution_environment import body, event, run, with_ees
from tests.shipped_layer import assemble_layer

pytestmark = pytest.mark.local


def mapped_libraries(pid: int | None) -> list[str]:
    """The shared objects a live process has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in maps if ".so" in line})


def runtime_settings(runtime: str) -> dict[str, Any]:
    if runtime == "python":
        return {}
    node = NodeRuntime().check()
    return {"node": node, "code_dir": node.code_dir, "handler": node.handler}


@pytest.mark.parametrize("runtime", ["nodejs", "python"])
def test_the_shipped_layer_serves_the_function_on_its_own_python(
    database: Database,
    secrets_manager: SecretsManager,
    bundled_python: Path,
    tmp_path: Path,
    runtime: str,
) -> None:
    # Given the layer as it ships, and a function environment as on AWS: the password only in
    # Secrets Manager and no python3 on PATH
    layer = assemble_layer(tmp_path / "opt", bundled_python)
    role = database.fresh_role("standard")
    env = {k: v for k, v in database.function_env(role, "standard").items() if k != "DB_PASSWORD"}
    env.update(
        secrets_manager,
        DB_SECRET_ARN=secrets_manager.for_role(role),
        PATH="/nonexistent-bin",
        LD_LIBRARY_PATH=str(layer / "lib"),  # Lambda's /opt/lib
    )
    if runtime == "nodejs":
        # ... and a PYTHONPATH (Node.js ignores it) leading to modules that cannot load: a
        # boto3, and an ssl that shadows the standard library's. The layer's Python must not
        # see them (-I). A Python function's own PYTHONPATH would break its runtime too.
        trap = tmp_path / "runtime-site"
        (trap / "boto3").mkdir(parents=True)
        (trap / "boto3" / "__init__.py").write_text("raise ImportError('a foreign boto3')\n")
        (trap / "ssl.py").write_text("raise ImportError('a module shadowing ssl')\n")
        env["PYTHONPATH"] = str(trap)
    settings: EESettings = ee_settings(
        tmp_path, env, f"shipped-{runtime}", layer_dir=layer, **runtime_settings(runtime)
    )

    libraries: list[str] = []

    async def scenario(ees: list[ExecutionEnvironment]) -> tuple[dict[str, Any], int]:
        (extension,) = ees[0].extension_procs  # the launcher exec'd the layer's Python
        libraries.extend(mapped_libraries(extension.pid))
        call = asyncio.create_task(ees[0].invoke(event(sleep_ms=600, queries=2)))
        seen = [0]
        while not call.done():
            seen.append(await asyncio.to_thread(database.connections, role))
            await asyncio.sleep(0.05)
        return body(await call), max(seen)

    # When one request runs through it
    result, holding = run(with_ees([settings], scenario))

    # Then the function was served through the EE's PgBouncer (one server connection) ...
    assert len(result["query_ms"]) == 2 and result["cold_start"] is True
    assert holding == 1
    # ... by an extension on the layer's own interpreter, its password read with the layer's boto3
    log = (settings.work_dir / "extensions.log").read_text()
    interpreter = layer / "pooler-python" / "bin" / "python3"
    assert re.search(rf"on Python 3\.13\.\d+ \({re.escape(str(interpreter))}\)", log), log
    assert "ready on" in log and "init failed" not in log, log
    # ... which loaded the layer's own libpython (the launcher puts the bundle's libraries
    # first: on Lambda's python3.13 runtime /var/lang/lib has another libpython3.13)
    libpython = [lib for lib in libraries if "/libpython" in lib]
    assert libpython and all(lib.startswith(str(layer)) for lib in libpython), libraries
    assert tagged_pids(settings.tag) == []
