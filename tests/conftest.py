"""Suite-wide: every process any test starts carries this session's id, and none may outlive it."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from local.processes import SESSION_ENV, kill_tagged, tagged_pids

pytest_plugins = ["tests.shipped_layer"]  # the session's bundled layer Python (bundled_python)

os.environ.setdefault(SESSION_ENV, f"pytest-{uuid.uuid4().hex}")

# The project's Node.js (scripts/bootstrap: npm package `node`, 24) ahead of the machine's, for
# everything the tests start that runs `node` from PATH: jsii under aws_cdk, the CDK CLI. As
# `npx cdk` does; the machine's Node 20 makes jsii print "Node 20 is not supported".
PROJECT_NODE_BIN = Path(__file__).resolve().parents[1] / "node_modules" / ".bin"
if (PROJECT_NODE_BIN / "node").exists():
    os.environ["PATH"] = f"{PROJECT_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    session = os.environ[SESSION_ENV]
    left = tagged_pids(session, SESSION_ENV)
    if left:
        names = [_cmdline(pid) for pid in left]
        kill_tagged(session, env_name=SESSION_ENV)
        pytest.fail(f"{len(left)} processes started by tests outlived them: {names}")


def _cmdline(pid: int) -> str:
    try:
        return (
            (Path("/proc") / str(pid) / "cmdline").read_bytes()[:100].replace(b"\0", b" ").decode()
        )
    except OSError:
        return f"pid {pid} (gone)"


class _TeardownWarnings(logging.Handler):
    """The stack's final sweep and its teardown bound are a safety net, not the mechanism: in
    tests, anything they catch is a teardown bug and fails the test that caused it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "left after teardown" in message or "teardown took over" in message:
            self.seen.append(message)


_TEARDOWN = _TeardownWarnings()
logging.getLogger("local.stack").addHandler(_TEARDOWN)


@pytest.fixture(autouse=True)
def teardown_needs_no_sweep() -> Iterator[None]:
    """Per test; a module's shared stack stops after its last test, so the session-wide
    check below catches those."""
    before = len(_TEARDOWN.seen)
    yield
    if len(_TEARDOWN.seen) > before:
        pytest.fail(f"the stack's teardown left work to its safety net: {_TEARDOWN.seen[before:]}")


@pytest.fixture(scope="session", autouse=True)
def no_teardown_left_to_the_sweep() -> Iterator[None]:
    yield
    if _TEARDOWN.seen:
        pytest.fail(f"a stack's teardown left work to its safety net: {_TEARDOWN.seen}")


LOG_NAMES = ("postgresql.log", "pgbouncer.log", "extensions.log", "runtime.log", "zygote.log")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test shows the tails of the logs its stack wrote (PostgreSQL, PgBouncer, the
    extensions, the runtimes), not just a temp path: the cause is usually in one of them."""
    report = yield
    if report.failed and isinstance(item, pytest.Function):
        tmp = item.funcargs.get("tmp_path")
        if isinstance(tmp, Path) and tmp.exists():
            tails = stack_log_tails(tmp)
            if tails:
                report.sections.append(("stack logs (tails)", tails))
    return report


def stack_log_tails(root: Path, files: int = 8, lines: int = 12) -> str:
    logs = [p for name in LOG_NAMES for p in root.rglob(name) if p.stat().st_size > 0]
    logs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    parts = []
    for log in logs[:files]:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.relative_to(root)}\n" + "\n".join(tail))
    return "\n".join(parts)
