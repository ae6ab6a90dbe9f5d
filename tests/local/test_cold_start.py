"""What a cold start costs here, and that its cheaper parts are still the real ones.

- The init credential check logs in through the EE's own PgBouncer, and the server connection
  it opens is the one the first request uses: one PostgreSQL login per cold start, not two.
- An extension launcher forked from the warm parent (local/zygote.py) is still its own
  process: it registers, serves, reports its init errors, and exits 0 when its API goes away;
  the parent reports every child's exit code as a Popen would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.execution_environment import (
    DEFAULT_LAYER_DIR,
    EEInitError,
    ExecutionEnvironment,
)
from local.processes import TAG_ENV, process_state, tagged_pids
from local.zygote import ForkedProcess, Zygote
from tests.local.conftest import Database
from tests.local.ee_settings import ee_settings

pytestmark = pytest.mark.local


def event(**query: object) -> bytes:
    return json.dumps({"queryStringParameters": {k: str(v) for k, v in query.items()}}).encode()


def backends(database: Database, role_name: str) -> list[int]:
    with database.server.admin_connect() as conn:
        rows = conn.execute(
            "select pid from pg_stat_activity"
            " where usename = %s and backend_type = 'client backend'",
            (role_name,),
        ).fetchall()
    return sorted(int(r[0]) for r in rows)


@pytest.fixture
def extension_zygote(tmp_path: Path) -> Iterator[Zygote]:
    zygote = Zygote(
        tag=uuid.uuid4().hex,
        python=__import__("sys").executable,
        code_dir=tmp_path,
        log_file=tmp_path / "zygote.log",
        preload=("pgbouncer_extension",),
        path=(DEFAULT_LAYER_DIR.resolve(),),
    )
    zygote.start()
    try:
        yield zygote
    finally:
        zygote.stop()


def test_the_init_check_s_server_connection_serves_the_first_request(
    database: Database, tmp_path: Path
) -> None:
    # Given a standard EE that has finished its init
    role = database.fresh_role("standard")
    settings = ee_settings(tmp_path, database.function_env(role, "standard"), "check-1")

    async def scenario() -> tuple[list[int], list[int], dict[str, object]]:
        ee = ExecutionEnvironment(settings)
        await ee.start()
        try:
            after_init = await asyncio.to_thread(backends, database, role.name)
            reply = json.loads(await ee.invoke(event(sleep_ms=0, queries=1)))
            after_invoke = await asyncio.to_thread(backends, database, role.name)
            return after_init, after_invoke, reply
        finally:
            await ee.shutdown()

    after_init, after_invoke, reply = asyncio.run(scenario())

    # Then init logged in once (through PgBouncer, which kept the server connection), and the
    # first request ran on that very backend: no second login
    assert reply["statusCode"] == 200, reply
    assert len(after_init) == 1, after_init
    assert after_invoke == after_init
    assert tagged_pids(settings.tag) == []


def test_a_forked_launcher_is_its_own_extension_process(
    database: Database, tmp_path: Path, extension_zygote: Zygote
) -> None:
    # Given an EE whose launcher is forked from the warm parent
    role = database.fresh_role("standard")
    settings = ee_settings(
        tmp_path,
        database.function_env(role, "standard"),
        "forked-1",
        tag=extension_zygote.tag,
        extension_zygote=extension_zygote,
    )

    async def scenario() -> tuple[int, list[list[str]], int, int]:
        ee = ExecutionEnvironment(settings)
        await ee.start()
        try:
            (launcher,) = ee.extension_procs
            assert isinstance(launcher, ForkedProcess)
            stat = Path(f"/proc/{launcher.pid}/stat").read_text().rsplit(")", 1)[1].split()
            reply = json.loads(await ee.invoke(event(sleep_ms=0, queries=1)))
            assert reply["statusCode"] == 200, reply
            pgbouncer = int((settings.pooler_files / "pgbouncer.pid").read_text())
            # When its Extensions API goes away with no SHUTDOWN
            assert ee._runner is not None
            await ee._runner.cleanup()
            ee._runner = None
            code = await asyncio.to_thread(launcher.wait, 10)
            events = [e.events for e in ee.extensions.values()]
            return int(stat[1]), events, code, pgbouncer
        finally:
            await ee.shutdown()

    parent, events, code, pgbouncer = asyncio.run(scenario())

    # Then it was the zygote's child, registered for SHUTDOWN only,
    # stopped its PgBouncer and exited 0, and its exit code came through
    assert parent == extension_zygote.pid
    assert events == [["SHUTDOWN"]]
    assert code == 0
    assert process_state(pgbouncer) in (None, "Z")
    assert tagged_pids(settings.tag) == [extension_zygote.pid]


def test_a_forked_launcher_reports_its_init_failure(
    database: Database, tmp_path: Path, extension_zygote: Zygote
) -> None:
    role = database.fresh_role("standard")
    env = {**database.function_env(role), "DB_PASSWORD": "not-the-password"}
    settings = ee_settings(
        tmp_path, env, "forked-bad-1", tag=extension_zygote.tag, extension_zygote=extension_zygote
    )

    started = time.perf_counter()
    with pytest.raises(EEInitError) as failure:
        asyncio.run(ExecutionEnvironment(settings).start())

    assert failure.value.error_type == "Extension.AuthFailed"
    assert f'password authentication failed for user "{role.name}"' in str(failure.value)
    assert time.perf_counter() - started < 5
    assert not (settings.pooler_files / "userlist.txt").exists()
    assert tagged_pids(settings.tag) == [extension_zygote.pid]


@pytest.mark.parametrize(
    ("script", "code", "logged"),
    [
        ("print('fine')", 0, "fine"),
        ("import sys; sys.exit(3)", 3, ""),
        ("import sys; sys.exit('no good')", 1, "no good"),
        ("raise ValueError('broken')", 1, "ValueError: broken"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL, ""),
    ],
    ids=["ends", "exit-3", "exit-message", "raises", "killed"],
)
def test_the_zygote_reports_each_child_s_exit_code(
    tmp_path: Path, extension_zygote: Zygote, script: str, code: int, logged: str
) -> None:
    path = tmp_path / "child"
    path.write_text("#!/usr/bin/env python3\n" + script + "\n")
    log = tmp_path / "child.log"

    child = extension_zygote.fork_script(
        script=path, env={TAG_ENV: extension_zygote.tag}, cwd=tmp_path, log_file=log
    )

    assert child.wait(10) == code
    assert child.poll() == code
    assert logged in log.read_text()
