"""TCP ports claimed for as long as a stack uses them, never found by bind-and-release alone.

A port that is merely free when asked can be handed to two stacks (two `local up`, two test
sessions) before either server binds it. So each claim takes an exclusive lock on a file named
after the port in one folder every poolbench process on this machine shares, as PgBouncer's own
test harness does with its port locks, and keeps it until release: a second claimer skips a
locked port. The lock dies with its process, so a SIGKILLed owner leaves no stale claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import tempfile
from pathlib import Path

# Below Linux's ephemeral range (32768-60999): a claimed port cannot meanwhile become the source
# port of some outgoing connection before its server binds it.
LISTEN_PORTS = range(20000, 32768)
LOCK_DIR = Path(tempfile.gettempdir()) / "poolbench-ports"


def _lock_dir() -> Path:
    LOCK_DIR.mkdir(exist_ok=True)
    with contextlib.suppress(PermissionError):
        LOCK_DIR.chmod(0o1777)  # shared by every user's stacks, like /tmp itself
    return LOCK_DIR


def _bindable(port: int) -> bool:
    """Not in use by anything else on this machine (a server that is not ours)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortClaims:
    """The ports one owner (a stack, a server, a test) holds; release() gives them all back."""

    def __init__(self) -> None:
        self._held: dict[int, int] = {}  # port -> the lock file's descriptor

    def claim(self) -> int:
        folder = _lock_dir()
        for _ in range(2000):
            port = secrets.choice(LISTEN_PORTS)
            if port in self._held:
                continue
            fd = os.open(folder / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if not _bindable(port):
                os.close(fd)
                continue
            self._held[port] = fd
            return port
        raise RuntimeError(
            f"no free port left in {LISTEN_PORTS.start}-{LISTEN_PORTS.stop - 1} on 127.0.0.1"
        )

    def release(self, port: int) -> None:
        fd = self._held.pop(port, None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        for port in list(self._held):
            self.release(port)

    @property
    def held(self) -> tuple[int, ...]:
        return tuple(self._held)


_PROCESS_CLAIMS = PortClaims()


def claim_for_process() -> int:
    """A port held until this process exits: for one-off servers (tests, a Locust master)."""
    return _PROCESS_CLAIMS.claim()
