"""Warm parents that fork EEs' processes: Python's start-up and imports paid once, not per EE.

A standard EE's runtime, and every EE's extension launcher, would each be a fresh Python that
starts up and imports its modules before doing its own work: most of a cold start's CPU here.
On AWS every EE has its own cores; here a burst of 100 cold starts queues on two. A zygote
starts once per kind, imports once, and forks a child per EE, which then runs as a fresh
process would (its own session, environment, working folder and log):

- runtimes: `python -m awslambdaric <handler>`, psycopg preloaded. awslambdaric itself is
  imported in the child, never here: it reads its environment when it is imported. The handler
  module is imported in the child too, so the function's init still runs per EE. awslambdaric
  forks its own workers from a warm parent the same way on Managed Instances.
- extension launchers: the layer's `#!/usr/bin/env python3` script, run as its #! line would
  run it, with the layer's pgbouncer_extension preloaded. The child registers with the EE's
  Extensions API and starts its own PgBouncer, as a fresh launcher does.

The zygote reaps its children and reports each exit code, so a child is seen as a Popen is.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local.processes import SESSION_ENV, TAG_ENV

_ZYGOTE = r"""
import json, os, runpy, select, signal, sys, traceback
setup = json.loads(sys.argv[1])
sys.path[:0] = setup["path"]
for name in setup["preload"]:
    __import__(name)
import gc
gc.freeze()  # what is loaded now is never collected: the children's collector leaves its pages
# unwritten, so they stay shared (copy-on-write) instead of copied into every child
wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select(); the children are reaped below


def say(message):
    os.write(1, (json.dumps(message) + "\n").encode())


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        say({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def become(request):
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(wake_r)
        os.close(wake_w)
        os.setsid()
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
        sys.path[:] = [entry for entry in sys.path if entry]  # -c's "" is not a fresh run's
        if "module" in request:  # python -m <module> <argv...>, run from its folder
            sys.path.insert(0, request["cwd"])
            sys.argv = [request["module"], *request["argv"]]
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        else:  # <script> <argv...>, as its #!python3 line would run it
            sys.path.insert(0, os.path.dirname(request["script"]))
            sys.argv = [request["script"], *request["argv"]]
            runpy.run_path(request["script"], run_name="__main__")
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


say({"ready": True})
pending = b""
while True:
    ready, _, _ = select.select([0, wake_r], [], [])
    if wake_r in ready:
        while True:
            try:
                if not os.read(wake_r, 512):
                    break
            except BlockingIOError:
                break
        reap()
    if 0 in ready:
        data = os.read(0, 65536)
        if not data:
            break  # the owner closed the pipe (stop(), or it died): the children stay its
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                become(request)
            say({"pid": pid})
"""


# A fork and its reply take milliseconds; a zygote that says nothing for this long is stuck.
FORK_TIMEOUT_S = 30.0


class ForkedProcess:
    """The zygote's child, seen from here: enough of Popen for the EE. The zygote reaps it and
    reports its exit code; a pidfd, opened as soon as the zygote names it, still tells when it
    has gone if the zygote cannot say (a recycled pid cannot pass for it), and the code is then
    unknown (-1)."""

    def __init__(self, pid: int, args: list[str], *, reported: bool = False) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        # set when the code is known: from the zygote, or -1 once it cannot come any more
        self._code_known = threading.Event()
        self._reported = reported
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone (and reaped): only the zygote can say how
            self._pidfd = None
            if not reported:
                self._set_code(-1)
        except OSError:  # no descriptor left (EMFILE): the zygote's report must do
            if not reported:
                raise
            self._pidfd = None

    def _set_code(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._code_known.set()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _unreported(self) -> None:
        """The zygote is gone: no code will come."""
        self._reported = False
        if self._pidfd is None:
            self._set_code(-1)

    def _exited_within(self, timeout_s: float | None) -> bool:
        """poll(2), not select(2): a stack of hundreds of EEs has descriptors above 1024."""
        pidfd = self._pidfd
        if pidfd is None:
            return self._code_known.wait(timeout_s)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout_s is None else int(timeout_s * 1000)))

    def _settle(self) -> None:
        """It has exited: its code comes from the zygote within moments, else it is -1."""
        if self._reported and self._code_known.wait(2.0):
            return
        self._set_code(-1)

    def poll(self) -> int | None:
        """Never blocks (the EE calls it on its event loop): a child that has exited and whose
        code the zygote has not reported yet is, for these few moments, still running, as a
        Popen's child is until it is reaped."""
        if self._code_known.is_set():
            return self.returncode
        if self._pidfd is not None and not self._reported and self._exited_within(0):
            self._set_code(-1)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Through the pidfd: a pid the kernel recycled cannot get it."""
        if self.poll() is None and self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, sig)

    def wait(self, timeout: float | None = None) -> int:
        if not self._code_known.is_set():
            if not self._exited_within(timeout):
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._settle()
        assert self.returncode is not None
        return self.returncode


class Zygote:
    """A warm parent for one kind of process; one per kind per stack: start() before the first
    EE, stop() after the last. fork_module() is `python -m <module>`, fork_script() a
    `#!/usr/bin/env python3` script, each as a fresh process would run it."""

    def __init__(
        self,
        *,
        tag: str,
        python: str,
        code_dir: Path,
        log_file: Path,
        preload: tuple[str, ...] = ("psycopg",),
        path: tuple[Path, ...] = (),
    ) -> None:
        self.tag = tag
        self.python = python
        self.code_dir = code_dir
        self.log_file = log_file
        self.preload = preload
        self.path = path
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one fork request and its reply at a time
        self._replies: queue.Queue[ForkedProcess | Exception | None] = queue.Queue()
        self._children: dict[int, ForkedProcess] = {}
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env.update({TAG_ENV: self.tag, "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13"})
        if SESSION_ENV in os.environ:
            env[SESSION_ENV] = os.environ[SESSION_ENV]
        setup = {"preload": list(self.preload), "path": [str(p.absolute()) for p in self.path]}
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.python, "-c", _ZYGOTE, json.dumps(setup)],
                env=env,
                cwd=self.code_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        # Warm before the first EE asks: its cold start must not wait for the imports.
        assert self._proc.stdout is not None
        if not self._proc.stdout.readline():
            self._proc.wait()
            raise RuntimeError(f"the zygote did not start; see {self.log_file}")
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """The zygote's words, in order: each fork's pid, then, later, each child's exit code."""
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            said = json.loads(line)
            if "pid" in said:
                try:
                    child = ForkedProcess(int(said["pid"]), [], reported=True)
                except Exception as exc:  # the fork that waits for it raises this
                    self._replies.put(exc)
                    continue
                self._children[child.pid] = child
                self._replies.put(child)
            elif "exited" in said and (gone := self._children.pop(int(said["exited"]), None)):
                gone._set_code(int(said["code"]))
        self._replies.put(None)  # a fork waiting for its reply learns the zygote died
        for child in self._children.values():
            child._unreported()
        self._children.clear()

    def _fork(self, request: dict[str, Any], args: list[str]) -> ForkedProcess:
        full_env = {TAG_ENV: self.tag, **request["env"]}
        if SESSION_ENV in os.environ:
            full_env[SESSION_ENV] = os.environ[SESSION_ENV]
        request = {**request, "env": full_env}
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"the zygote is not running; see {self.log_file}")
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write((json.dumps(request) + "\n").encode())
                self._proc.stdin.flush()
            except OSError as exc:
                raise RuntimeError(f"the zygote died; see {self.log_file}") from exc
            try:
                child = self._replies.get(timeout=FORK_TIMEOUT_S)
            except queue.Empty:
                self._proc.kill()  # a late reply would be taken for the next fork's
                raise RuntimeError(
                    f"the zygote did not fork within {FORK_TIMEOUT_S:.0f} s; see {self.log_file}"
                ) from None
        if child is None:
            raise RuntimeError(f"the zygote died; see {self.log_file}")
        if isinstance(child, Exception):
            raise RuntimeError(f"cannot watch the zygote's child: {child}") from child
        child.args = args
        return child

    def fork_module(
        self, *, module: str, argv: list[str], env: Mapping[str, str], cwd: Path, log_file: Path
    ) -> ForkedProcess:
        """`python -m <module> <argv>` for one EE, in `cwd` (blocking: call it from a worker
        thread). Both paths absolute: the child changes directory before it opens its log."""
        request = {
            "module": module,
            "argv": argv,
            "env": dict(env),
            "cwd": str(cwd.absolute()),
            "log": str(log_file.absolute()),
        }
        return self._fork(request, [self.python, "-m", module, *argv])

    def fork_runtime(
        self, *, env: Mapping[str, str], cwd: Path, log_file: Path, handler: str
    ) -> ForkedProcess:
        """A new runtime process for one EE: `python -m awslambdaric <handler>`."""
        return self.fork_module(
            module="awslambdaric", argv=[handler], env=env, cwd=cwd, log_file=log_file
        )

    def fork_script(
        self, *, script: Path, env: Mapping[str, str], cwd: Path, log_file: Path
    ) -> ForkedProcess:
        """A `#!/usr/bin/env python3` script (an extension's launcher) for one EE."""
        request = {
            "script": str(script.absolute()),
            "argv": [],
            "env": dict(env),
            "cwd": str(cwd.absolute()),
            "log": str(log_file.absolute()),
        }
        return self._fork(request, [str(script)])

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
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout:
            proc.stdout.close()


# The name the stack and EEs have used for the runtimes' zygote.
RuntimeZygote = Zygote


def runs_with_python(path: Path) -> bool:
    """True for a script whose #! line runs python3 (`#!/usr/bin/env python3`, a path to it):
    a zygote can run it as the interpreter would."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    if not first.startswith(b"#!"):
        return False
    words = first[2:].split()
    return bool(words) and (words[-1].rsplit(b"/", 1)[-1] in (b"python3", b"python"))
