"""Child processes of the local stack: tagged, grouped, and always reaped.

Every process the stack starts (PostgreSQL, extensions and the PgBouncers they start, the AWS
runtime client and its forked workers) inherits the environment variable TAG_ENV set to the
stack's id. That lets teardown, tests and Ctrl-C find every last one of them by reading
/proc/<pid>/environ, even grandchildren that left their parent's process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

TAG_ENV = "POOLBENCH_STACK_ID"
# Set by an outer owner (the test session) and inherited by every stack it starts, so it can
# prove that nothing of any stack outlived it.
SESSION_ENV = "POOLBENCH_SESSION"


class ChildProcess(Protocol):
    """What teardown needs of a process we started: a Popen, or a zygote's forked child."""

    @property
    def pid(self) -> int: ...

    @property
    def args(self) -> Any: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def unprivileged_account(preferred: str = "postgres") -> pwd.struct_passwd | None:
    """The account servers run as when we are root (PostgreSQL and PgBouncer refuse root)."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists")


def give_to(account: pwd.struct_passwd | None, *paths: Path) -> None:
    """Hands folders to the unprivileged account, and opens the way to them."""
    if account is None:
        return
    for path in paths:
        os.chown(path, account.pw_uid, account.pw_gid)
        open_way_to(path)


def open_way_to(path: Path) -> None:
    """Lets other users traverse root's folders above `path` (mkdtemp and pytest make 0700),
    so a server that dropped root can reach its own folder below them."""
    if os.geteuid() != 0:
        return
    for parent in path.parents:
        info = parent.stat()
        if info.st_uid == 0 and not info.st_mode & 0o001:
            parent.chmod(info.st_mode | 0o711)


def spawn(
    argv: Sequence[str],
    *,
    tag: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    log_file: Path | None = None,
    account: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    """Starts a tagged child in its own session, so a signal to its group reaches its children
    (awslambdaric's workers) and a Ctrl-C at the terminal does not race our own teardown."""
    full_env = {**env, TAG_ENV: tag}
    if SESSION_ENV in os.environ:
        full_env[SESSION_ENV] = os.environ[SESSION_ENV]
    out = log_file.open("ab") if log_file else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            list(argv),
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
    finally:
        if log_file and not isinstance(out, int):
            out.close()


def process_state(pid: int) -> str | None:
    """The state letter from /proc/<pid>/stat (R, S, Z, ...); None once the pid is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def tagged_pids(tag: str, env_name: str = TAG_ENV) -> list[int]:
    """Every live process carrying the tag (zombies excluded: they are already dead)."""
    needle = f"{env_name}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        if process_state(int(entry.name)) not in (None, "Z"):
            found.append(int(entry.name))
    return found


def signal_group(proc: ChildProcess, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        # No group of that id yet: a zygote's child signalled between its fork and its
        # setsid(). The process itself gets it (through its handle, so never a recycled pid),
        # or its EE's stop would wait out the whole grace for a SIGTERM that went nowhere.
        send = getattr(proc, "send_signal", None)
        if send is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send(sig)
    except PermissionError:
        pass


def stop_group(proc: ChildProcess, sig: signal.Signals, timeout_s: float) -> None:
    """Asks the child's group to stop with `sig` (each server has its own polite signal);
    SIGKILL if it is still there after `timeout_s`."""
    if proc.poll() is not None:
        return
    signal_group(proc, sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait()


def live_group_members(pgid: int) -> list[int]:
    """The processes of a group that still run (zombies are dead: they only wait to be
    reaped, by whoever adopted them)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def wait_group_gone(proc: ChildProcess, timeout_s: float = 2.0) -> bool:
    """True once no process of the child's group runs (SIGKILLed members take a moment to be
    torn down). A member whose parent died is a zombie until PID 1 reaps it, and a PID 1 that
    reaps late (a container's init, or none) keeps it listed for seconds: dead is enough."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if not live_group_members(proc.pid):
            return True
        time.sleep(0.02)
    return False


def kill_tagged(tag: str, grace_s: float = 2.0, env_name: str = TAG_ENV) -> list[int]:
    """SIGTERM then SIGKILL to whatever still carries the tag; returns what had to be killed."""
    pids = tagged_pids(tag, env_name)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and tagged_pids(tag, env_name):
            time.sleep(0.05)
        if not tagged_pids(tag, env_name):
            break
    return pids


class OrphanWatcher:
    """Ends a stack's processes when its owner dies, SIGKILL included, as a Lambda host ends
    its sandboxes: a small process in a session of its own that waits on a pipe from the owner.
    The kernel closes the pipe when the owner dies, however it dies; then the watcher ends
    every process carrying the stack's tag (PostgreSQL, launchers and their PgBouncers,
    runtimes and their workers). A clean stop tells it so first, and it exits quietly."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(cls, tag: str) -> OrphanWatcher:
        env = {k: v for k, v in os.environ.items() if k != TAG_ENV}  # it must not end itself
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.orphan_watch", tag],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        return cls(proc)

    def release(self) -> None:
        """The owner stopped its stack itself: nothing for the watcher to do."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.write(b"released\n")
                stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ExitWatch:
    """Calls back once, on the event loop, when the first of some processes exits.

    The kernel says so through a pidfd per process becoming readable, so a stack of hundreds
    of EEs costs no wake-ups while they run (a 0.2 s poll per EE cost 1,500 a second at 300
    EEs), and a recycled pid cannot fool it: a pidfd names one process, never its successor.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        procs: Sequence[ChildProcess],
        on_exit: Callable[[ChildProcess], None],
    ) -> None:
        self._loop = loop
        self._on_exit = on_exit
        self._fds: dict[int, ChildProcess] = {}
        self._fired = False
        for proc in procs:
            try:
                fd = os.pidfd_open(proc.pid)
            except ProcessLookupError:
                loop.call_soon(self._fire, proc)
                continue
            self._fds[fd] = proc
            loop.add_reader(fd, self._fire, proc)

    def _fire(self, proc: ChildProcess) -> None:
        if self._fired:
            return
        self._fired = True
        self.close()
        self._on_exit(proc)

    def close(self) -> None:
        for fd in list(self._fds):
            self._loop.remove_reader(fd)
            os.close(fd)
        self._fds.clear()


def child_pids(pid: int) -> list[int]:
    """The live children of a process (awslambdaric's forked workers, a launcher's PgBouncer)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (Path("/proc") / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in found if process_state(p) not in (None, "Z")]


class Pid:
    """A process we did not start but watch (a runtime's worker): its pid and a name."""

    def __init__(self, pid: int, args: str) -> None:
        self.pid = pid
        self.args = args

    def poll(self) -> int | None:
        return None if process_state(self.pid) not in (None, "Z") else -1

    def wait(self, timeout: float | None = None) -> int:
        raise NotImplementedError("only watched, never waited for")
