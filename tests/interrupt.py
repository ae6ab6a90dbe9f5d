"""Ctrl-C for a real `poolbench` command: start it in a session of its own, wait until it is
doing what the test means to interrupt, send SIGINT (or SIGTERM), and report what happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local.processes import SESSION_ENV, tagged_pids


@dataclass(frozen=True)
class Interrupted:
    returncode: int
    stopped_in_s: float
    running_before: int  # processes of the command's session just before SIGINT
    left_after: list[int]  # processes of that session still alive once it exited
    log: str


# What a non-interactive shell does for `cmd &`: SIGINT ignored, then exec.
_SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN);"
    " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def interrupt_poolbench(
    args: list[str],
    log: Path,
    ready: Callable[[], bool],
    ready_timeout_s: float = 60,
    cwd: Path | None = None,
    inherit_sigint_ignored: bool = False,
    sig: signal.Signals = signal.SIGINT,
) -> Interrupted:
    """inherit_sigint_ignored: started as a background job of a non-interactive shell is;
    sig: SIGTERM stops it as `kill` or a CI job's timeout does."""
    session = f"interrupt-{uuid.uuid4().hex}"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                *(["-c", _SIGINT_IGNORED] if inherit_sigint_ignored else []),
                "-m",
                "poolbench.cli",
                *args,
            ],
            env={**os.environ, SESSION_ENV: session},
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not ready():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"never got ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        running = len(tagged_pids(session, SESSION_ENV))
        proc.send_signal(sig)
        start = time.monotonic()
        proc.wait(30)
        stopped_in = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Interrupted(
        proc.returncode, stopped_in, running, tagged_pids(session, SESSION_ENV), log.read_text()
    )
