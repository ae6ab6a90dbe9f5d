"""One Lambda execution environment (EE) on this machine, built from the real parts.

It serves this EE's Runtime API (/2018-06-01/runtime/...) and Extensions API
(/2020-01-01/extension/...) over loopback HTTP, starts the layer's extensions with Lambda's
environment, waits for them to register, then starts the AWS Python runtime client
(`python -m awslambdaric <handler>`). With AWS_LAMBDA_MAX_CONCURRENCY=N the client forks N
workers that all poll /next: exactly Python on Managed Instances. Without it, one worker: a
standard Lambda EE. Shutdown follows Lambda: SHUTDOWN to extensions, SIGTERM to the runtime,
SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from aiohttp import web

from functions import contract
from local.node_runtime import NodeRuntime
from local.processes import (
    TAG_ENV,
    ChildProcess,
    ExitWatch,
    Pid,
    child_pids,
    open_way_to,
    signal_group,
    spawn,
    wait_group_gone,
)
from local.zygote import Zygote, runs_with_python

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LAYER_DIR = REPO_ROOT / "functions" / "pooler"
DEFAULT_HANDLER = "functions.app.handler.handler"
RUNTIME_PREFIX = "/2018-06-01/runtime"
EXTENSION_PREFIX = "/2020-01-01/extension"
# Managed EEs: the runtime's parent imports these before it forks its workers, so N workers
# share one copy instead of each importing it (init still runs in every worker, as on AWS).
# Without it, 3 EEs x 64 workers spend ~20 CPU-seconds importing psycopg on a 2-core machine.
RUNTIME_PRELOAD = ("psycopg",)
_PRELOAD_THEN_RUNTIME = (
    "import importlib, runpy, sys; "
    "[importlib.import_module(m) for m in sys.argv.pop(1).split(',') if m]; "
    "runpy.run_module('awslambdaric', run_name='__main__', alter_sys=True)"
)
# What a process in the EE may see of ours: enough to find python3 and nothing secret.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "PYENV_ROOT", "PYENV_VERSION", "TZ")


class EEInitError(RuntimeError):
    """The EE could not start: an extension or the runtime failed init (message says which).
    error_type is what the failing part reported (Lambda-Extension-Function-Error-Type or the
    runtime's errorType), "" when it reported nothing (it exited, or init timed out)."""

    def __init__(self, message: str, error_type: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type


class FunctionError(RuntimeError):
    """The handler raised: the runtime reported it through the Runtime API error path."""

    def __init__(self, payload: bytes, error_type: str) -> None:
        super().__init__(error_type)
        self.payload = payload
        self.error_type = error_type


class State(Enum):
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class EESettings:
    """One EE's shape. max_concurrency None is a standard EE; N is a Managed Instances EE."""

    ee_id: str
    work_dir: Path
    function_env: Mapping[str, str]
    tag: str
    max_concurrency: int | None = None
    # POOLER_PORT: only the name of the socket (.s.PGSQL.<port>) in pooler_dir, so every EE
    # can keep PgBouncer's default, as on AWS.
    pooler_port: int = 6432
    layer_dir: Path | None = DEFAULT_LAYER_DIR
    handler: str = DEFAULT_HANDLER
    code_dir: Path = REPO_ROOT
    python: str = sys.executable
    function_name: str = "poolbench"
    init_timeout_s: float = 10.0  # Lambda's init limit; managed EEs add 0.25 s per worker here
    preload: tuple[str, ...] = RUNTIME_PRELOAD
    # Standard EEs: fork the runtime from this warm parent instead of starting a fresh Python.
    zygote: Zygote | None = None
    # Every EE: fork a python3 extension launcher from this warm parent, which has imported
    # what the layer's launcher imports (used only for the layer it preloaded from).
    extension_zygote: Zygote | None = None
    shutdown_grace_s: float = 2.0
    # The function's timeout, as the stack deploys it on AWS (infra timeoutSeconds, 29 s: API
    # Gateway's integration limit). Also given to the function as FUNCTION_TIMEOUT_MS.
    invoke_timeout_s: float = 29.0
    # The Node.js function under aws-lambda-ric instead of the Python one (local/node_runtime.py);
    # code_dir and handler are then its folder and handler.
    node: NodeRuntime | None = None

    def __post_init__(self) -> None:
        # The runtime and the extensions run in other folders: hand them absolute paths only.
        object.__setattr__(self, "work_dir", self.work_dir.absolute())
        object.__setattr__(self, "code_dir", self.code_dir.absolute())

    @property
    def slots(self) -> int:
        return self.max_concurrency or 1

    @property
    def pooler_files(self) -> Path:
        """Where the extension's files really are (ini, auth file, log, pid, socket): in the
        run folder, so they outlive the EE for reading."""
        return self.work_dir.resolve() / "pooler"

    @property
    def pooler_dir(self) -> Path:
        """The extension's POOLER_RUN_DIR: this EE's own folder, as /tmp is on Lambda, so EEs on
        one machine never share PgBouncer's socket. A short link to pooler_files, made at start
        and removed at shutdown, because a socket's path must fit in 107 bytes and a run
        folder deep in a checkout (or pytest's) may not. Absolute: PgBouncer, the extension
        and the workers each resolve it from elsewhere."""
        return Path(tempfile.gettempdir()).resolve() / f"poolbench-{self.tag[:8]}-{self.ee_id}"

    @property
    def init_deadline_s(self) -> float:
        """Forking and initialising N workers on a small machine takes longer than one."""
        return self.init_timeout_s + 0.25 * (self.max_concurrency or 0)

    @property
    def ready_pollers(self) -> int:
        """/next polls that mean the runtime's init is done: one per Python worker process."""
        if self.node is None:
            return self.slots
        threadpool = self.function_env.get(contract.ENV_UV_THREADPOOL_SIZE)
        size = int(threadpool) if threadpool else contract.LIBUV_THREADPOOL_DEFAULT
        return self.node.ready_pollers(self.max_concurrency, size)

    def runtime_argv(self) -> list[str]:
        """`python -m awslambdaric <handler>`, with the preload ahead of it for managed EEs."""
        if self.node is not None:
            return self.node.argv()
        if self.max_concurrency and self.preload:
            return [self.python, "-c", _PRELOAD_THEN_RUNTIME, ",".join(self.preload), self.handler]
        return [self.python, "-m", "awslambdaric", self.handler]


@dataclass
class Extension:
    name: str
    extension_id: str
    events: list[str]
    next_called: bool = False
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class PendingInvocation:
    request_id: str
    payload: bytes
    future: asyncio.Future[bytes]
    deadline_ms: int


class WindowMax:
    """A gauge whose maximum since the last read is kept, so a 1 s sampler sees short peaks."""

    def __init__(self) -> None:
        self.value = 0
        self._max = 0

    def add(self, delta: int) -> None:
        self.value += delta
        self._max = max(self._max, self.value)

    def take_max(self) -> int:
        peak, self._max = self._max, self.value
        return peak


class ExecutionEnvironment:
    """start() -> invoke()* -> shutdown(); all methods run on one asyncio loop."""

    def __init__(
        self,
        settings: EESettings,
        on_unhealthy: Callable[[ExecutionEnvironment], None] | None = None,
    ) -> None:
        self.settings = settings
        self.state = State.STARTING
        self.on_unhealthy = on_unhealthy
        self.in_flight = WindowMax()
        self.extensions: dict[str, Extension] = {}
        self.extension_procs: list[ChildProcess] = []
        self.runtime_proc: ChildProcess | None = None
        self.init_ms = 0.0
        # Cold-start phases (scripts/bench_cold_start.py): epoch times, and ms per phase
        self.created_at = time.time()
        self.started_at: float | None = None
        self.phase_ms: dict[str, float] = {}
        # ...and when each step began or ended (time.time()): spawned, registered, ready, ...
        self.marks: dict[str, float] = {}
        # None is the shutdown sentinel: it releases one long-polling worker request.
        self._queue: asyncio.Queue[PendingInvocation | None] = asyncio.Queue()
        self._pending: dict[str, PendingInvocation] = {}
        self._pollers = 0
        self._init_moved = asyncio.Event()  # set when an API call may have finished a step
        self._init_error: str | None = None
        self._init_error_type = ""
        self._runner: web.AppRunner | None = None
        self._exit_watch: ExitWatch | None = None
        self._shutdown_task: asyncio.Future[None] | None = None
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def ee_id(self) -> str:
        return self.settings.ee_id

    @property
    def idle_slots(self) -> int:
        return self.settings.slots - self.in_flight.value

    async def start(self) -> None:
        """Extensions init, then runtime init; raises EEInitError (and cleans up) on failure."""
        self._refuse_if_shutting_down()  # shut down before it began: nothing may open now
        started = time.perf_counter()
        self.started_at = time.time()
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        files, link = self.settings.pooler_files, self.settings.pooler_dir
        files.mkdir(parents=True, exist_ok=True)
        open_way_to(files)
        link.unlink(missing_ok=True)  # left by an EE of a stack that was killed
        link.symlink_to(files, target_is_directory=True)
        await self._serve_api()
        try:
            await self._start_extensions()
            between = time.perf_counter()
            self.phase_ms["extensions"] = (between - started) * 1000
            await self._start_runtime()
            self.phase_ms["runtime"] = (time.perf_counter() - between) * 1000
        except BaseException:
            await self.shutdown()
            raise
        self.init_ms = (time.perf_counter() - started) * 1000
        self.state = State.READY
        self._watch()

    def _base_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        # `#!/usr/bin/env python3` in the layer finds our interpreter first, as it finds
        # /var/lang/bin/python3 on Lambda, not a version-manager shim (~0.1 CPU-s per start).
        env["PATH"] = os.pathsep.join([str(Path(self.settings.python).parent), env.get("PATH", "")])
        env.update(self.settings.function_env)
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.port}",
                "AWS_LAMBDA_FUNCTION_NAME": self.settings.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_STREAM_NAME": self.ee_id,
                "AWS_REGION": self.settings.function_env.get("AWS_REGION", "local"),
                "POOLBENCH_EE_ID": self.ee_id,
                contract.ENV_POOLER_RUN_DIR: str(self.settings.pooler_dir),
                "FUNCTION_TIMEOUT_MS": str(int(self.settings.invoke_timeout_s * 1000)),
                "LAMBDA_TASK_ROOT": str(self.settings.code_dir.resolve()),
                "AWS_LAMBDA_INITIALIZATION_TYPE": (
                    "lambda-managed-instances" if self.settings.max_concurrency else "on-demand"
                ),
            }
        )
        env[contract.ENV_POOLER_PORT] = str(self.settings.pooler_port)
        return env

    async def _start_extensions(self) -> None:
        layer = self.settings.layer_dir
        paths = sorted((layer / "extensions").iterdir()) if layer else []
        executables = [p for p in paths if p.is_file() and os.access(p, os.X_OK)]
        work_dir = self.settings.work_dir.resolve()
        zygote = self.settings.extension_zygote
        if layer is None or zygote is None or layer.resolve() not in zygote.path:
            zygote = None  # its preloaded modules are another layer's
        self.marks["extensions_spawned"] = time.time()
        for path in executables:
            self._refuse_if_shutting_down()
            proc: ChildProcess
            if zygote is not None and runs_with_python(path):
                proc = await asyncio.to_thread(
                    zygote.fork_script,
                    script=path.resolve(),
                    env={**self._base_env(), TAG_ENV: self.settings.tag},
                    cwd=work_dir,
                    log_file=work_dir / "extensions.log",
                )
            else:
                proc = spawn(
                    [str(path.resolve())],  # its cwd is the EE folder: no relative path
                    tag=self.settings.tag,
                    env=self._base_env(),
                    cwd=work_dir,
                    log_file=work_dir / "extensions.log",
                )
            self.extension_procs.append(proc)
        if self.shutting_down:  # it began while the zygote forked: these are ours to end
            for proc in self.extension_procs:
                signal_group(proc, signal.SIGKILL)
                await asyncio.to_thread(wait_group_gone, proc)
            self._refuse_if_shutting_down()
        await self._wait_for(
            lambda: (
                len(self.extensions) == len(executables)
                and all(e.next_called for e in self.extensions.values())
            ),
            self.extension_procs,
            "extensions",
        )

    async def _start_runtime(self) -> None:
        env = self._base_env()
        env["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3.13"
        if self.settings.node is not None:
            env.update(
                self.settings.node.env(self.settings.max_concurrency, self.settings.function_name)
            )
        if self.settings.max_concurrency:
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.settings.max_concurrency)
        log_file = self.settings.work_dir.resolve() / "runtime.log"
        runtime: ChildProcess
        self._refuse_if_shutting_down()
        self.marks["runtime_spawned"] = time.time()
        forkable = self.settings.node is None and not self.settings.max_concurrency
        if self.settings.zygote is not None and forkable:
            runtime = await asyncio.to_thread(
                self.settings.zygote.fork_runtime,
                env={**env, TAG_ENV: self.settings.tag},
                cwd=self.settings.code_dir,
                log_file=log_file,
                handler=self.settings.handler,
            )
        else:
            runtime = spawn(
                self.settings.runtime_argv(),
                tag=self.settings.tag,
                env=env,
                cwd=self.settings.code_dir,
                log_file=log_file,
            )
        if self.shutting_down:  # it began while the zygote forked: this child is ours to end
            signal_group(runtime, signal.SIGKILL)
            await asyncio.to_thread(wait_group_gone, runtime)
            self._refuse_if_shutting_down()
        self.runtime_proc = runtime
        await self._wait_for(
            lambda: self._pollers >= self.settings.ready_pollers, [runtime], "runtime"
        )

    def _refuse_if_shutting_down(self) -> None:
        """Nothing is started once shutdown has begun: it would outlive its EE."""
        if self._shutdown_task is not None:
            raise EEInitError(f"{self.ee_id}: shut down during init")

    async def _wait_for(
        self,
        ready: Callable[[], bool],
        procs: Sequence[ChildProcess],
        what: str,
    ) -> None:
        deadline = time.monotonic() + self.settings.init_deadline_s
        while not ready():
            if self._init_error:
                raise EEInitError(f"{self.ee_id}: {self._init_error}", self._init_error_type)
            for proc in procs:
                code = proc.poll()
                if code is not None:
                    raise EEInitError(
                        f"{self.ee_id}: {what} process exited with code {code} during"
                        f" init; see {self.settings.work_dir}"
                    )
            if time.monotonic() > deadline:
                raise EEInitError(
                    f"{self.ee_id}: {what} init did not finish within"
                    f" {self.settings.init_deadline_s:.0f} s; see {self.settings.work_dir}"
                )
            # Woken by the APIs as init moves on; the timeout only to see a process that
            # exited: a 10 ms poll per EE cost 10,000 wake-ups a second with 100 EEs in init.
            self._init_moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._init_moved.wait(), 0.05)

    def _watch(self) -> None:
        """An extension or runtime that dies while serving makes the EE unhealthy (Lambda
        replaces such an EE); pending invocations fail rather than hang."""
        procs: list[ChildProcess] = [
            p for p in (*self.extension_procs, self.runtime_proc) if p is not None
        ]
        if self.settings.max_concurrency and self.runtime_proc is not None:
            # awslambdaric's parent only joins its workers: a worker that dies would leave
            # its request hanging in an EE that looks healthy. Lambda replaces such an EE.
            procs += [Pid(pid, "runtime worker") for pid in child_pids(self.runtime_proc.pid)]
        self._exit_watch = ExitWatch(asyncio.get_running_loop(), procs, self._process_exited)

    def _process_exited(self, proc: ChildProcess) -> None:
        if self.state is not State.READY:
            return
        logger.warning("%s: process %s exited; EE unhealthy", self.ee_id, proc.args)
        self.state = State.UNHEALTHY
        self._fail_pending("execution environment became unhealthy")
        if self.on_unhealthy:
            self.on_unhealthy(self)

    def _fail_pending(self, reason: str) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        for inv in list(self._pending.values()):
            if not inv.future.done():
                inv.future.set_exception(RuntimeError(reason))

    @property
    def shutting_down(self) -> bool:
        return self._shutdown_task is not None

    async def shutdown(self) -> None:
        """One shutdown per EE, owned by whoever asks first: every caller awaits the same one,
        so nobody carries on while its processes still live (a cancelled caller does not cut
        it short either)."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        """SHUTDOWN to extensions, SIGTERM to the runtime, SIGKILL to stragglers after grace.
        An EE still in its init has no Shutdown phase (Lambda has none for it either): an
        extension that has not asked for its next event cannot be told SHUTDOWN, so waiting
        for it would only cost the whole grace. Its processes are killed at once."""
        initialised = self.state is not State.STARTING
        self.state = State.STOPPING
        if self._exit_watch is not None:
            self._exit_watch.close()
        self._fail_pending("execution environment shut down")
        for ext in self.extensions.values():
            ext.shutdown.set()
        if self.runtime_proc and self.runtime_proc.poll() is None:
            signal_group(self.runtime_proc, signal.SIGTERM)
        procs = [p for p in [*self.extension_procs, self.runtime_proc] if p is not None]
        deadline = time.monotonic() + (self.settings.shutdown_grace_s if initialised else 0)
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            await asyncio.sleep(0.02)
        if initialised and (stuck := [p for p in procs if p.poll() is None]):
            # Each stop that needs the SIGKILL costs the whole grace: say which, and why
            # the teardown took that long.
            names = ", ".join("runtime" if p is self.runtime_proc else "extension" for p in stuck)
            logger.warning(
                "%s: %s still running %.0f s after SHUTDOWN/SIGTERM: killed",
                self.ee_id,
                names,
                self.settings.shutdown_grace_s,
            )
        for _ in range(self._pollers):
            self._queue.put_nowait(None)
        for proc in procs:
            # The group, not just the leader: awslambdaric's workers, an extension's PgBouncer.
            signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 5)
            await asyncio.to_thread(wait_group_gone, proc)
        if self._runner:
            await self._runner.cleanup()
        self.settings.pooler_dir.unlink(missing_ok=True)
        self.state = State.STOPPED

    # --- invoking ---------------------------------------------------------------------------

    async def invoke(self, payload: bytes, request_id: str | None = None) -> bytes:
        """Hands the event to the next idle worker; the response payload, or FunctionError."""
        if self.state is not State.READY:
            raise RuntimeError(f"{self.ee_id} is {self.state.value}")
        request_id = request_id or str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        deadline_ms = int((time.time() + self.settings.invoke_timeout_s) * 1000)
        inv = PendingInvocation(request_id, payload, loop.create_future(), deadline_ms)
        self._pending[request_id] = inv
        self.in_flight.add(1)
        try:
            self._queue.put_nowait(inv)
            return await asyncio.wait_for(inv.future, self.settings.invoke_timeout_s)
        finally:
            self.in_flight.add(-1)
            self._pending.pop(request_id, None)

    # --- the HTTP APIs ----------------------------------------------------------------------

    async def _serve_api(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get(f"{RUNTIME_PREFIX}/invocation/next", self._next),
                web.post(f"{RUNTIME_PREFIX}/invocation/{{rid}}/response", self._response),
                web.post(f"{RUNTIME_PREFIX}/invocation/{{rid}}/error", self._error),
                web.post(f"{RUNTIME_PREFIX}/init/error", self._runtime_init_error),
                web.post(f"{EXTENSION_PREFIX}/register", self._register),
                web.get(f"{EXTENSION_PREFIX}/event/next", self._extension_next),
                web.post(f"{EXTENSION_PREFIX}/init/error", self._extension_error),
                web.post(f"{EXTENSION_PREFIX}/exit/error", self._extension_error),
            ]
        )
        # Long polls (/next, event/next) never finish by themselves: do not wait for them.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=0.2,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _next(self, request: web.Request) -> web.StreamResponse:
        self._pollers += 1
        self._init_moved.set()
        try:
            inv = await self._queue.get()
        finally:
            self._pollers -= 1
        if inv is None:
            return web.Response(status=410)  # the EE is shutting down
        if request.transport is None or request.transport.is_closing():
            # The worker that asked is gone (killed mid-poll): hand the event to another one.
            self._queue.put_nowait(inv)
            return web.Response(status=410)
        headers = {
            # awslambdaric's native client needs every one of these, Content-Type included.
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": (
                f"arn:aws:lambda:local:000000000000:function:{self.settings.function_name}"
            ),
            "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
        }
        return web.Response(body=inv.payload, headers=headers)

    async def _response(self, request: web.Request) -> web.Response:
        inv = self._pending.get(request.match_info["rid"])
        body = await request.read()
        if inv is not None and not inv.future.done():
            inv.future.set_result(body)
        return web.json_response({"status": "OK"}, status=202)

    async def _error(self, request: web.Request) -> web.Response:
        inv = self._pending.get(request.match_info["rid"])
        body = await request.read()
        error_type = request.headers.get("Lambda-Runtime-Function-Error-Type", "Unhandled")
        if inv is not None and not inv.future.done():
            inv.future.set_exception(FunctionError(body, error_type))
        return web.json_response({"status": "OK"}, status=202)

    async def _runtime_init_error(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._init_error = f"runtime init failed: {_error_message(body)}"
        self._init_error_type = request.headers.get("Lambda-Runtime-Function-Error-Type", "")
        self._init_moved.set()
        return web.json_response({"status": "OK"}, status=202)

    async def _register(self, request: web.Request) -> web.Response:
        name = request.headers.get("Lambda-Extension-Name", "")
        body = json.loads(await request.read() or b"{}")
        events = list(body.get("events", []))
        if self.settings.max_concurrency and "INVOKE" in events:
            # What Lambda Managed Instances answer (FACTS.md): extensions may take SHUTDOWN only.
            return web.json_response(
                {"errorMessage": "INVOKE is not supported", "errorType": "Extension.InvalidEvent"},
                status=400,
            )
        ext = Extension(name=name, extension_id=str(uuid.uuid4()), events=events)
        self.marks.setdefault("registered", time.time())
        self._init_moved.set()
        self.extensions[ext.extension_id] = ext
        return web.json_response(
            {"functionName": self.settings.function_name, "functionVersion": "$LATEST"},
            headers={"Lambda-Extension-Identifier": ext.extension_id},
        )

    async def _extension_next(self, request: web.Request) -> web.Response:
        ext = self.extensions.get(request.headers.get("Lambda-Extension-Identifier", ""))
        if ext is None:
            return web.json_response({"errorMessage": "unknown extension"}, status=403)
        ext.next_called = True
        self._init_moved.set()
        await ext.shutdown.wait()
        deadline = int((time.time() + self.settings.shutdown_grace_s) * 1000)
        return web.json_response(
            {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline}
        )

    async def _extension_error(self, request: web.Request) -> web.Response:
        ext = self.extensions.get(request.headers.get("Lambda-Extension-Identifier", ""))
        name = ext.name if ext else "unknown extension"
        error_type = request.headers.get("Lambda-Extension-Function-Error-Type", "")
        self._init_error = f"{name}: {error_type}: {_error_message(await request.read())}"
        self._init_error_type = error_type
        self._init_moved.set()
        return web.json_response({"status": "OK"}, status=202)


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("errorMessage", body.decode(errors="replace")))
    except (json.JSONDecodeError, AttributeError):
        return body.decode(errors="replace")
