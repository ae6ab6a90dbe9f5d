"""A warm parent that forks standard EEs' runtimes: `awslambdaric` without the import bill.

A standard EE's runtime is one fresh Python that starts up and imports psycopg before its
handler's init: most of a cold start's CPU here. On AWS every EE has its own cores; here a burst
of 100 cold starts queues on two. The zygote starts once, imports psycopg once, and forks a
child per EE, which then runs `python -m awslambdaric <handler>` as a fresh process would (its
own session, environment, working folder and log). awslambdaric itself is imported in the
child, never here: its native client reads AWS_LAMBDA_RUNTIME_API when it is imported. The
handler module is imported in the child too, so the function's init still runs per EE.
awslambdaric forks its own workers from a warm parent the same way on Managed Instances.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local.processes import SESSION_ENV, TAG_ENV

_ZYGOTE = r"""
import json, os, runpy, signal, sys
for name in sys.argv[1].split(","):
    if name:
        __import__(name)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
sys.stdout.write(json.dumps({"ready": True}) + "\n")
sys.stdout.flush()
for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.chdir(request["cwd"])
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            os.close(null)
            os.environ.clear()
            os.environ.update(request["env"])
            sys.path.insert(0, request["cwd"])
            sys.argv = ["awslambdaric", request["handler"]]
            runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
        finally:
            os._exit(1)
    sys.stdout.write(json.dumps({"pid": pid}) + "\n")
    sys.stdout.flush()
"""


class ForkedProcess:
    """The zygote's child, seen from here: enough of Popen for the EE. It is not our child, so
    its exit code is unknown (gone is gone); a pidfd, opened as soon as the zygote names it,
    tells when it has gone, and a recycled pid cannot pass for it."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None
            self.returncode = -1

    def _exited_within(self, timeout_s: float | None) -> bool:
        """poll(2), not select(2): a stack of hundreds of EEs has descriptors above 1024."""
        assert self._pidfd is not None
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout_s is None else int(timeout_s * 1000)))

    def poll(self) -> int | None:
        if self.returncode is None and self._pidfd is not None and self._exited_within(0):
            self.returncode = -1
            os.close(self._pidfd)
            self._pidfd = None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        waiting = self.returncode is None and self._pidfd is not None
        if waiting and not self._exited_within(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.poll()
        return -1


class RuntimeZygote:
    """One per stack; start() before the first EE, stop() after the last."""

    def __init__(
        self,
        *,
        tag: str,
        python: str,
        code_dir: Path,
        log_file: Path,
        preload: tuple[str, ...] = ("psycopg",),
    ) -> None:
        self.tag = tag
        self.python = python
        self.code_dir = code_dir
        self.log_file = log_file
        self.preload = preload
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env.update({TAG_ENV: self.tag, "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13"})
        if SESSION_ENV in os.environ:
            env[SESSION_ENV] = os.environ[SESSION_ENV]
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.python, "-c", _ZYGOTE, ",".join(self.preload)],
                env=env,
                cwd=self.code_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        # Warm before the first EE asks: its cold start must not wait for the imports.
        assert self._proc.stdout is not None
        if not self._proc.stdout.readline():
            self._proc.wait()
            raise RuntimeError(f"the runtime zygote did not start; see {self.log_file}")

    def fork_runtime(
        self, *, env: Mapping[str, str], cwd: Path, log_file: Path, handler: str
    ) -> ForkedProcess:
        """A new runtime process for one EE (blocking: call it from a worker thread)."""
        full_env = {TAG_ENV: self.tag, **env}
        if SESSION_ENV in os.environ:
            full_env[SESSION_ENV] = os.environ[SESSION_ENV]
        request: dict[str, Any] = {
            "env": full_env,
            # the child changes directory before it opens its log: both must be absolute
            "cwd": str(cwd.absolute()),
            "log": str(log_file.absolute()),
            "handler": handler,
        }
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"the runtime zygote is not running; see {self.log_file}")
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            reply = self._proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the runtime zygote died; see {self.log_file}")
        return ForkedProcess(int(json.loads(reply)["pid"]), [sys.executable, "-m", "awslambdaric"])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
