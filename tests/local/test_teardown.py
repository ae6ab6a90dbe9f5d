"""Teardown that is owned, bounded and orphan-proof, with real processes.

- One shutdown per EE: a second caller waits for the same one, so it never carries on while
  the EE's PgBouncer and runtime still live.
- SIGKILL of the owner (`poolbench local up`, `poolbench run`) leaves nothing of its stack: a
  watcher ends it, as a Lambda host ends its sandboxes.
- Ports are claimed for as long as they are used: another process cannot claim them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from local.execution_environment import ExecutionEnvironment
from local.ports import PortClaims
from local.processes import SESSION_ENV, live_group_members, process_state, tagged_pids
from tests.local.conftest import Database
from tests.local.ee_settings import ee_settings as settings

pytestmark = pytest.mark.local


def wait_for(predicate: object, timeout_s: float, what: str) -> float:
    """Polls the state it waits for; returns how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if callable(predicate) and predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_a_second_shutdown_waits_for_the_first(tmp_path: Path, database: Database) -> None:
    env = database.function_env(database.fresh_role("standard"))
    ee = ExecutionEnvironment(settings(tmp_path, env, "standard-1"))

    async def scenario() -> list[int]:
        await ee.start()
        procs = [p for p in (*ee.extension_procs, ee.runtime_proc) if p is not None]
        first = asyncio.create_task(ee.shutdown())
        await asyncio.sleep(0)  # the first caller has begun
        await ee.shutdown()  # the second caller
        alive = [p.pid for p in procs if process_state(p.pid) not in (None, "Z")]
        await first
        return alive

    assert asyncio.run(scenario()) == []


def start_in_own_session(
    args: list[str], log: Path, cwd: Path
) -> tuple[subprocess.Popen[bytes], str]:
    session = f"sigkill-{uuid.uuid4().hex}"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "poolbench.cli", *args],
            env={**os.environ, SESSION_ENV: session},
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
    return proc, session


@pytest.mark.parametrize("command", ["local up", "run"])
def test_sigkill_of_the_owner_leaves_nothing_running(tmp_path: Path, command: str) -> None:
    # Given a stack that is serving load (run) or ready (local up), with every part running
    outputs = tmp_path / "outputs.json"
    if command == "local up":
        args = ["local", "up", "--outputs-file", str(outputs), "--run-dir", "stack"]
    else:
        args = ["run", "--preset", "smoke", "--duration", "120", "--out", "out"]
    proc, session = start_in_own_session(args, tmp_path / "cmd.log", tmp_path)
    try:

        def serving() -> bool:
            if command == "local up":
                return outputs.exists()
            return any((tmp_path / "out").glob("*/locust_stats.csv"))

        wait_for(serving, 60, f"{command} ready: {(tmp_path / 'cmd.log').read_text()[-800:]}")
        running = tagged_pids(session, SESSION_ENV)
        kinds = {Path(f"/proc/{pid}/exe").resolve().name for pid in running if _exe(pid)}
        assert {"postgres", "pgbouncer"} <= kinds, kinds

        # When the owner is SIGKILLed: no teardown of its own can run
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        # Then within 15 s nothing of its stack runs any more
        try:
            wait_for(lambda: tagged_pids(session, SESSION_ENV) == [], 15, "stack ended")
        except AssertionError:
            left = [_cmdline(pid) for pid in tagged_pids(session, SESSION_ENV)]
            raise AssertionError(f"still running 15 s after SIGKILL: {left}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()[:120].replace(b"\0", b" ").decode()
    except OSError:
        return f"{pid} (gone)"


def _exe(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/exe").resolve(strict=True)
    except OSError:
        return False
    return True


def test_a_claimed_port_is_never_claimed_by_another_process(tmp_path: Path) -> None:
    # Given ports claimed here, and held
    claims = PortClaims()
    held = {claims.claim() for _ in range(200)}
    try:
        # When another process claims many ports while these are held
        code = (
            "import json; from local.ports import PortClaims; c = PortClaims();"
            " print(json.dumps([c.claim() for _ in range(800)]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        theirs = set(json.loads(out))
    finally:
        claims.release_all()

    # Then it never got one of ours (800 random picks of 12768 ports would meet about 12)
    assert len(theirs) == 800
    assert held.isdisjoint(theirs)


def test_an_extension_whose_api_disappears_stops_its_pgbouncer(
    tmp_path: Path, database: Database
) -> None:
    # Given a ready EE: its extension blocked on event/next, its PgBouncer serving
    env = database.function_env(database.fresh_role("standard"))
    ee = ExecutionEnvironment(settings(tmp_path, env, "orphaned-1"))

    async def scenario() -> tuple[int, float]:
        await ee.start()
        pgbouncer = int((ee.settings.work_dir / "pooler" / "pgbouncer.pid").read_text())
        (launcher,) = ee.extension_procs
        try:
            # When the Extensions API goes away with no SHUTDOWN (its host is gone)
            assert ee._runner is not None
            await ee._runner.cleanup()
            # Then the extension takes that as SHUTDOWN: PgBouncer stopped, exit 0, unaided
            code = await asyncio.to_thread(launcher.wait, 10)
            gone_in = await asyncio.to_thread(
                wait_for, lambda: process_state(pgbouncer) in (None, "Z"), 5, "PgBouncer gone"
            )
            return code, gone_in
        finally:
            ee._runner = None
            await ee.shutdown()

    code, _ = asyncio.run(scenario())
    assert code == 0


def test_a_zombie_is_not_a_live_member_of_its_group() -> None:
    # Given a group whose leader runs and whose other member has exited, unreaped (a zombie,
    # as a killed runtime's workers are until a late-reaping PID 1 gets to them)
    leader = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time; os.fork() or sys.exit(0); time.sleep(30)"],
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: any(process_state(pid) == "Z" for pid in _children(leader.pid)),
            10,
            "the member became a zombie",
        )
        # Then only the leader counts as running
        assert live_group_members(leader.pid) == [leader.pid]
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
