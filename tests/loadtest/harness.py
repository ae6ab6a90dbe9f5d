"""A real HTTP server standing in for the arms, and a real Locust run against it.

The server (aiohttp on 127.0.0.1, its own event loop in a thread) answers `/<prefix>/<arm>`
after sleeping the requested `sleep_ms`, and records what the load looked like from the
receiving end: requests per arm, requests in flight when each one arrived, the query strings.
Locust runs as a subprocess in its own session so that every process it forks can be checked
for (and would be killed if) left behind.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

API_PREFIX = "prod"
"""Like API Gateway's stage: arms live under a path prefix, which ApiUrl carries."""


@dataclass(frozen=True)
class Arrival:
    """One request as the server saw it arrive."""

    time: float
    arm: str
    in_flight: int
    """Requests of this arm in flight, this one included."""
    query: dict[str, str]


@dataclass
class ArmServer:
    """Serves every arm; `fail_every[arm] = k` answers every k-th request of that arm with 500."""

    fail_every: dict[str, int] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    port: int = 0
    _in_flight: Counter[str] = field(default_factory=Counter)
    _seen: Counter[str] = field(default_factory=Counter)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def api_url(self) -> str:
        """What an outputs file's ApiUrl would hold (trailing slash, like API Gateway's)."""
        return f"http://127.0.0.1:{self.port}/{API_PREFIX}/"

    def counts(self) -> dict[str, int]:
        """Requests received per arm."""
        return dict(self._seen)

    def peak(self, arm: str) -> int:
        """Most requests of `arm` in flight at once."""
        return max((a.in_flight for a in self.arrivals if a.arm == arm), default=0)

    def reset(self) -> None:
        """Forget what was seen (between runs sharing one server)."""
        self.arrivals.clear()
        self._seen.clear()

    async def _handle(self, request: web.Request) -> web.Response:
        arm = request.match_info["arm"]
        self._seen[arm] += 1
        number = self._seen[arm]
        self._in_flight[arm] += 1
        self.arrivals.append(
            Arrival(time.monotonic(), arm, self._in_flight[arm], dict(request.query))
        )
        try:
            await asyncio.sleep(int(request.query.get("sleep_ms", "0")) / 1000)
            every = self.fail_every.get(arm)
            if every and number % every == 0:
                return web.json_response({"error": "planned failure"}, status=500)
            return web.json_response({"arm": arm, "ee": f"{arm}-1", "worker": 1})
        finally:
            self._in_flight[arm] -= 1

    def start(self) -> None:
        """Start serving in a background thread; returns once the port is bound."""
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_get(f"/{API_PREFIX}/{{arm}}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
            await web.SockSite(self._runner, sock, backlog=512).start()
            ready.set()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(serve())
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="arm-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("arm server did not start")

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Stop the loop and join the thread (the runner is cleaned up inside the loop)."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            assert not self._thread.is_alive(), "arm server thread did not stop"


def write_outputs(path: Path, api_url: str, arms: str, stack: str = "PoolbenchLocal") -> Path:
    """An outputs file of the contract's shape."""
    path.write_text(
        json.dumps({stack: {"ApiUrl": api_url, "Arms": arms, "MetricsSource": "local"}}),
        encoding="utf-8",
    )
    return path


@dataclass(frozen=True)
class LocustRun:
    """What a finished Locust process left: exit code, output, and its stats CSV rows."""

    returncode: int
    stdout: str
    stderr: str
    run_dir: Path
    seconds: float

    def stats(self) -> dict[str, dict[str, str]]:
        """locust_stats.csv rows by request name (the arm; '' name rows are skipped)."""
        with (self.run_dir / "locust_stats.csv").open(encoding="utf-8") as handle:
            return {row["Name"]: row for row in csv.DictReader(handle)}

    def requests(self, arm: str) -> int:
        return int(self.stats()[arm]["Request Count"])

    def failures(self, arm: str) -> int:
        return int(self.stats()[arm]["Failure Count"])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_locust(argv: list[str], run_dir: Path, timeout: float = 60) -> LocustRun:
    """Run Locust to completion in its own session; fail if any of its processes outlives it."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"locust did not finish in {timeout} s:\n{stderr[-3000:]}")
    seconds = time.perf_counter() - started
    deadline = time.monotonic() + 5
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("a process of the locust run outlived it (killed now)")
    return LocustRun(process.returncode, stdout, stderr, run_dir, seconds)
