"""The whole local stack: PostgreSQL, the arms' function models, the gateway, the recorder.

Three ways to run it, one lifecycle:
- `LocalStack`: async start()/stop(), for code already on an event loop;
- `running_stack(settings)`: a context manager that runs the stack on a background loop, for
  commands (`poolbench run`) and tests;
- `serve(settings, ...)`: `poolbench local up`, until SIGINT or SIGTERM.
Teardown always ends with a sweep for any process still carrying the stack's tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

from functions import contract
from local.cpu import CpuSampler
from local.execution_environment import DEFAULT_LAYER_DIR, REPO_ROOT, EESettings
from local.function_models import FunctionModel, ManagedModel, StandardModel, machine_init_slots
from local.gateway import STAGE, Gateway
from local.metrics import MetricsRecorder, PoolerEndpoint
from local.node_runtime import NodeRuntime, node_versions
from local.ports import PortClaims
from local.postgres import PostgresServer, PostgresSettings, Role
from local.processes import OrphanWatcher, kill_tagged
from local.settings import PoolerSettings, StackSettings
from local.shared_pooler import SharedPooler
from local.zygote import Zygote

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Teardown's bound: SIGINT/SIGTERM to nothing left takes at most this, plus the final sweep
# (at most 0.5 s of SIGTERM before its SIGKILL). `poolbench run` first gives Locust
# LOCUST_STOP_GRACE_S (3 s): 3 + 6 + 0.5 stays within the 10 s every phase is held to.
STOP_BUDGET_S = 6.0
CLOSE_GRACE_S = 0.5  # for the tasks left on the stack's loop once it has stopped


def find_pgbouncer() -> str:
    """Debian installs it in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which(
        "pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin"
    )
    if not found:
        raise RuntimeError("pgbouncer not found: run scripts/bootstrap")
    return found


def function_name(arm: str) -> str:
    return f"poolbench-{arm}"


def function_environment(
    arm: str,
    role: Role,
    *,
    db_port: int,
    db_name: str,
    pgbouncer: str,
    pooler: PoolerSettings | None = None,
    connect_timeout_s: int = 30,
    connect_direct: bool = False,
) -> dict[str, str]:
    """A local function's environment (docs/contracts.md), as infra/functions.py sets it on
    AWS but for the password, which here is in the environment instead of Secrets Manager.

    connect_direct: over TCP with the role's password, to the database itself (direct,
    managed-direct) or to the shared pooler in front of it (proxy, whose port is db_port)."""
    c = contract
    env = {
        c.ENV_ARM: arm,
        c.ENV_DB_HOST: "127.0.0.1",
        c.ENV_DB_PORT: str(db_port),
        c.ENV_DB_NAME: db_name,
        c.ENV_DB_USER: role.name,
        c.ENV_DB_PASSWORD: role.password,  # local only; AWS reads Secrets Manager
        c.ENV_PGBOUNCER_BIN: pgbouncer,
        c.ENV_SERVER_TLS_SSLMODE: "disable",
        c.ENV_CONNECT_TIMEOUT: str(connect_timeout_s),
        **(pooler or PoolerSettings()).environment(),
    }
    if connect_direct:
        env[c.ENV_CONNECT_DIRECT] = "1"
    return env


class LocalStack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings.validate()
        self.tag = uuid.uuid4().hex
        self.run_dir = settings.run_dir
        self.database = PostgresServer(
            PostgresSettings(
                data_dir=self.run_dir / "postgres" / "data",
                max_connections=settings.max_connections,
            ),
            tag=self.tag,
        )
        self.roles: dict[str, Role] = {}
        self.models: dict[str, FunctionModel] = {}
        self.shared_pooler: SharedPooler | None = None
        self.recorder: MetricsRecorder | None = None
        self.gateway_port = 0
        self._gateway: Gateway | None = None
        self._recorder_task: asyncio.Task[None] | None = None
        self._ports = PortClaims()  # held until stop(), so no other stack takes them
        self._pgbouncer = find_pgbouncer()
        # The Node.js function's runtime, checked before anything starts (bootstrap built it?)
        self.node = NodeRuntime().check() if settings.runtime == "nodejs" else None
        self.zygote: Zygote | None = None  # standard EEs' runtimes
        self.extension_zygote: Zygote | None = None  # every EE's extension launcher
        self.leftovers: list[int] = []  # what the final sweep had to kill: a teardown bug
        self._stop_task: asyncio.Future[None] | None = None
        self._watcher: OrphanWatcher | None = None

    # --- start --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Everything up, arms ready for traffic (managed: min EEs running); undone on failure."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._watcher = await asyncio.to_thread(OrphanWatcher.start, self.tag)
            await asyncio.to_thread(self.database.start)
            self.roles = await asyncio.to_thread(self.database.create_roles, self.settings.arms)
            shared: dict[str, PoolerEndpoint] = {}
            shared_arms = [
                a for a in self.settings.arms if contract.arm(a).pooler is contract.Pooler.SHARED
            ]
            for arm in shared_arms:  # the proxy arm: one pooler in front of the database
                self.shared_pooler = self._make_shared_pooler(arm)
                await asyncio.to_thread(self.shared_pooler.start)
                shared[arm] = PoolerEndpoint(
                    f"{arm}-pooler", "127.0.0.1", self.shared_pooler.port, self.roles[arm]
                )
            python = self.node is None  # the zygote forks Python runtimes only
            if (
                python
                and self.settings.zygote
                and any(not contract.arm(a).managed for a in self.settings.arms)
            ):
                self.zygote = Zygote(
                    tag=self.tag,
                    python=sys.executable,
                    code_dir=REPO_ROOT,
                    log_file=self.run_dir / "zygote.log",
                    # the handler's psycopg, and what awslambdaric imports that reads no
                    # environment at import (awslambdaric itself does: it is the child's)
                    preload=("psycopg", "http.client", "simplejson"),
                )
                await asyncio.to_thread(self.zygote.start)
            if self.settings.zygote and any(contract.arm(a).has_layer for a in self.settings.arms):
                # What the layer's launcher imports, imported once: each EE's launcher is then
                # a fork, not a fresh python3 that starts up and imports ssl, urllib, ...
                self.extension_zygote = Zygote(
                    tag=self.tag,
                    python=sys.executable,
                    code_dir=REPO_ROOT,
                    log_file=self.run_dir / "zygote.log",
                    preload=("pgbouncer_extension",),
                    path=(DEFAULT_LAYER_DIR.resolve(),),
                )
                await asyncio.to_thread(self.extension_zygote.start)
            slots = machine_init_slots(self.settings.init_slots_per_core)  # shared: one machine
            for arm in self.settings.arms:
                self.models[arm] = self._make_model(arm, slots)
            await asyncio.gather(*(model.start() for model in self.models.values()))
            self.recorder = MetricsRecorder(
                self.models,
                self.database,
                self.roles,
                self.settings.samples_file or self.run_dir / "samples.jsonl",
                interval_s=self.settings.sample_interval_s,
                shared_poolers=shared,
                cpu=CpuSampler(tag=self.tag),
            )
            self._gateway = Gateway(
                self.models,
                lambda: self.recorder.latest if self.recorder else {},
                self.settings.gateway_port,
            )
            await self._gateway.start()
            self.gateway_port = self._gateway.port
            self._recorder_task = asyncio.create_task(self.recorder.run())
        except BaseException:
            await self.stop()
            raise

    def _make_shared_pooler(self, arm: str) -> SharedPooler:
        role = self.roles[arm]
        return SharedPooler.for_database(
            run_dir=self.run_dir / f"{arm}-pooler",
            db_port=self.database.port,
            db_name=self.database.settings.dbname,
            user=role.name,
            password=role.password,
            pool_size=self.settings.proxy.pool_size,
            pgbouncer_bin=self._pgbouncer,
            tag=self.tag,
            port=self._ports.claim(),
        )

    def _function_env(self, arm: str) -> dict[str, str]:
        spec = contract.arm(arm)
        shared = spec.pooler is contract.Pooler.SHARED and self.shared_pooler is not None
        return function_environment(
            arm,
            self.roles[arm],
            db_port=self.shared_pooler.port
            if shared and self.shared_pooler
            else self.database.port,
            db_name=self.database.settings.dbname,
            pgbouncer=self._pgbouncer,
            pooler=self.settings.pooler,
            connect_timeout_s=self.settings.function_connect_timeout_s,
            connect_direct=spec.connects_direct,
        )

    def _make_model(self, arm: str, init_slots: asyncio.Semaphore) -> FunctionModel:
        env = self._function_env(arm)

        spec = contract.arm(arm)

        def make_settings(ee_id: str, max_concurrency: int | None) -> EESettings:
            settings = EESettings(
                ee_id=ee_id,
                work_dir=self.run_dir / "ees" / ee_id,
                function_env=env,
                tag=self.tag,
                max_concurrency=max_concurrency,
                # Only the in-EE pooler arms carry the layer (and so start its extension).
                layer_dir=DEFAULT_LAYER_DIR if spec.has_layer else None,
                function_name=function_name(arm),
                zygote=self.zygote,
                extension_zygote=self.extension_zygote,
            )
            if self.node is None:
                return settings
            return replace(
                settings,
                function_env={**env, **self.node.threadpool_for(max_concurrency)},
                node=self.node,
                code_dir=self.node.code_dir,
                handler=self.node.handler,
            )

        if spec.managed:
            return ManagedModel(arm, make_settings, self.settings.managed, init_slots)
        return StandardModel(arm, make_settings, self.settings.standard, init_slots)

    # --- what others see -----------------------------------------------------------------------

    def zygotes(self) -> list[int]:
        """The pids of the warm parents that fork EEs' processes (for CPU accounting)."""
        zygotes = (self.zygote, self.extension_zygote)
        return [pid for z in zygotes if z is not None and (pid := z.pid) is not None]

    @property
    def api_url(self) -> str:
        """Under the stage path, as API Gateway's ApiUrl (`.../prod/`)."""
        return f"http://127.0.0.1:{self.gateway_port}/{STAGE}/"

    def outputs(self) -> dict[str, dict[str, str]]:
        """The outputs file, in the shape `cdk deploy --outputs-file` writes (contracts.md)."""
        values = {
            "ApiUrl": self.api_url,
            "Arms": ",".join(self.settings.arms),
            "MetricsSource": "local",
            "MetricsUrl": f"{self.api_url}_poolbench/metrics",
            "Region": "local",
            contract.OUT_RUNTIME: self.settings.runtime,
        }
        for arm in self.settings.arms:
            values[contract.function_name_output(arm)] = function_name(arm)
        return {self.settings.stack_name: values}

    def write_outputs(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.outputs(), indent=2) + "\n")
        tmp.replace(path)

    def describe(self) -> dict[str, Any]:
        """The resolved knobs and versions, for the run's manifest."""
        knobs = asdict(self.settings)
        knobs["run_dir"] = str(self.settings.run_dir)
        return {
            "settings": knobs,
            "postgresql": self.database.version,
            "pgbouncer": pgbouncer_version(self._pgbouncer),
            "runtime_versions": node_versions(self.node) if self.node else {},
        }

    # --- stop ---------------------------------------------------------------------------------

    async def stop(self) -> None:
        """One stop per stack, owned by the first caller (start's own clean-up, a Ctrl-C, the
        context manager): later callers await the same one. Bounded: what is not down within
        STOP_BUDGET_S is SIGKILLed."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        try:
            await asyncio.wait_for(self._orderly_stop(), STOP_BUDGET_S)
        except TimeoutError:
            logger.warning("teardown took over %.0f s: killing what is left", STOP_BUDGET_S)
        finally:
            self.leftovers = await asyncio.to_thread(kill_tagged, self.tag, 0.5)
            if self.leftovers:
                logger.warning("killed %d processes left after teardown", len(self.leftovers))
            self._ports.release_all()
            if self._watcher is not None:
                self._watcher.release()

    async def _orderly_stop(self) -> None:
        """Recorder; gateway and EEs together (Lambda's shutdown order each); poolers,
        PostgreSQL. Together: the gateway's stop waits for its requests in flight, and while
        it waited a cold start on the request path went on spawning its EE's processes after
        the stop had begun. The EEs' stop ends those requests at once (counted as cut off)."""
        if self._recorder_task:
            self._recorder_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder_task
        await asyncio.gather(
            *([self._gateway.stop()] if self._gateway is not None else []),
            *(m.stop() for m in self.models.values()),
            return_exceptions=True,
        )
        if self._gateway is not None:
            self._gateway.log_totals()
        for zygote in (self.zygote, self.extension_zygote):
            if zygote is not None:
                await asyncio.to_thread(zygote.stop)
        if self.shared_pooler is not None:
            await asyncio.to_thread(self.shared_pooler.stop)
        await asyncio.to_thread(self.database.stop)


def pgbouncer_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.rsplit(" ", 1)[-1] if first else "unknown"


class StackRunner:
    """A LocalStack on its own event loop thread, driven from synchronous code."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="local-stack", daemon=True
        )
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    def read(self, fn: Callable[[], T], timeout: float | None = 10) -> T:
        """``fn()`` run on the stack's loop, where the models change their EEs: a caller on
        another thread that iterated them directly could see a dict change size under it."""

        async def on_loop() -> T:
            return fn()

        return self.call(on_loop(), timeout)

    def close(self) -> None:
        """Stops the loop once the tasks still on it (request handlers the gateway's stop cut
        off) are cancelled and done, as asyncio.run does: a task destroyed while pending
        prints a warning of its own, one per cut-off request, on the user's Ctrl-C."""
        with contextlib.suppress(Exception):
            self.call(_cancel_the_rest(), timeout=CLOSE_GRACE_S + 1)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _cancel_the_rest() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)


@contextlib.contextmanager
def running_stack(settings: StackSettings) -> Iterator[StackRunner]:
    """Starts the stack on a background loop; always stops it, Ctrl-C included."""
    runner = StackRunner(LocalStack(settings))
    start = runner.submit(runner.stack.start())
    try:
        start.result()
        yield runner
    finally:
        start.cancel()
        try:
            runner.call(runner.stack.stop(), timeout=60)
        finally:
            runner.close()


def serve(
    settings: StackSettings,
    outputs_file: Path | None,
    on_ready: Callable[[LocalStack], None],
) -> None:
    """Runs until SIGINT or SIGTERM, then tears everything down (a signal during start too)."""

    async def main() -> None:
        stack = LocalStack(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        start = asyncio.create_task(stack.start())
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if start.done():
                start.result()
                if outputs_file is not None:
                    stack.write_outputs(outputs_file)
                on_ready(stack)
                await waiter
        finally:
            start.cancel()
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
            await stack.stop()

    asyncio.run(main())
