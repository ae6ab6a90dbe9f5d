"""Suite-wide: every process any test starts carries this session's id, and none may outlive it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.processes import SESSION_ENV, kill_tagged, tagged_pids

os.environ.setdefault(SESSION_ENV, f"pytest-{uuid.uuid4().hex}")


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
