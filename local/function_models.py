"""How Lambda places requests on execution environments, for each arm.

standard: one request per EE; a request that finds no idle EE waits for a new one (a cold start
on the request path); idle EEs are reused warm and reaped after an idle timeout; beyond the
account's concurrency limit, requests are throttled.

managed (Lambda Managed Instances): N slots per EE, min_ees ready before traffic, least-loaded
routing, a request that finds no free slot is throttled at once (no cold start on the request
path), and an asynchronous scaler adds EEs when utilisation passes its target.

Every EE is a real ExecutionEnvironment; these classes only decide where a request goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from functions import contract
from local.execution_environment import (
    EEInitError,
    EESettings,
    ExecutionEnvironment,
    FunctionError,
    State,
    WindowMax,
)
from local.settings import ManagedSettings, StandardSettings

logger = logging.getLogger(__name__)

EESettingsFactory = Callable[[str, int | None], EESettings]

# EE inits share this machine's cores (on AWS each EE has its own). An init costs ~50 ms of CPU
# and ~150 ms end to end here (scripts/bench_cold_start.py, docs/cold_starts.md): a third of it
# on the CPU, the rest waiting on PgBouncer, PostgreSQL and the APIs. So 3 per core keep the
# cores busy; the default bound is well above that, and still keeps a burst of 1,000 from
# sharing the cores so thinly that each init misses Lambda's 10 s limit.
INIT_SLOTS_PER_CORE = 8


def machine_init_slots(per_core: int = INIT_SLOTS_PER_CORE) -> asyncio.Semaphore:
    """How many EE inits may run at once on this machine, shared by every arm."""
    return asyncio.Semaphore(per_core * (os.cpu_count() or 1))


class Throttled(Exception):
    """Lambda's 429: no capacity for this request now. `reason` names the throttle-reason
    metric it counts under as well (Managed Instances publish ConcurrencyThrottles,
    CPUThrottles, MemoryThrottles beside Throttles); the local models only ever run out of
    concurrency: a full EE (managed) or the concurrency limit (standard)."""

    def __init__(self, reason: str = "ConcurrencyThrottles") -> None:
        super().__init__(reason)
        self.reason = reason


class Counters:
    """Per-window counts (read and reset by the 1 s sampler) and totals (never reset)."""

    NAMES = (contract.INVOCATIONS, contract.ERRORS, contract.THROTTLES, contract.COLD_STARTS)

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self.names = (*self.NAMES, *extra)
        self.window = dict.fromkeys(self.names, 0)
        self.total = dict.fromkeys(self.names, 0)

    def add(self, name: str, n: int = 1) -> None:
        self.window[name] += n
        self.total[name] += n

    def take(self) -> dict[str, int]:
        taken, self.window = self.window, dict.fromkeys(self.names, 0)
        return taken


class FunctionModel(ABC):
    """One arm's function: its EEs, its routing, its CloudWatch-named gauges."""

    THROTTLE_REASONS: tuple[str, ...] = ("ConcurrencyThrottles",)
    """The throttle reasons this model can raise (Throttled.reason), sampled as counters."""

    def __init__(
        self,
        arm: str,
        make_settings: EESettingsFactory,
        init_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.arm = arm
        self.make_settings = make_settings
        self.init_slots = init_slots or machine_init_slots()
        self.ees: dict[str, ExecutionEnvironment] = {}
        self.concurrency = WindowMax()
        # A reason the model can throttle for is a counter of its own, 0 when it did not
        # happen; a reason it has no way to hit (CPU, memory) is absent, never 0.
        self.counters = Counters(self.THROTTLE_REASONS)
        self.init_ms: list[float] = []
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finishing: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._stop_task: asyncio.Future[None] | None = None

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def _route(self, payload: bytes, request_id: str) -> bytes: ...

    async def invoke(self, payload: bytes, request_id: str) -> bytes:
        """Runs one request on some EE; raises Throttled or FunctionError as Lambda would."""
        self.concurrency.add(1)
        try:
            result = await self._route(payload, request_id)
        except Throttled as throttle:
            self.counters.add(contract.THROTTLES)
            self.counters.add(throttle.reason)
            raise
        except (FunctionError, EEInitError, RuntimeError, TimeoutError):
            self.counters.add(contract.INVOCATIONS)
            self.counters.add(contract.ERRORS)
            raise
        finally:
            self.concurrency.add(-1)
        self.counters.add(contract.INVOCATIONS)
        return result

    async def _new_ee(self, max_concurrency: int | None) -> ExecutionEnvironment:
        if self._stopping:
            raise RuntimeError(f"{self.arm} is stopping: no new execution environment")
        ee_id = f"{self.arm}-{next(self._ids)}"
        ee = ExecutionEnvironment(self.make_settings(ee_id, max_concurrency), self._unhealthy)
        self.ees[ee_id] = ee
        try:
            async with self.init_slots:
                if self._stopping:  # stop began while this waited for a slot
                    raise RuntimeError(f"{self.arm} is stopping: no new execution environment")
                await ee.start()
        except BaseException:
            self.ees.pop(ee_id, None)
            raise
        self.init_ms.append(ee.init_ms)
        return ee

    def _unhealthy(self, ee: ExecutionEnvironment) -> None:
        """Lambda replaces an EE whose extension or runtime died: drop it and shut it down."""
        self._retire(ee)

    def _spawn(self, coro: Any, *, finish_on_stop: bool = False) -> None:
        """A background task. Loops and scale-outs are cancelled at stop; a shutdown already
        under way (finish_on_stop) is waited for: cut short, it would leave its EE's API
        socket open and its processes to the final sweep."""
        if self._stopping and not finish_on_stop:
            coro.close()  # nothing new once stop has begun
            return
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self._finishing if finish_on_stop else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _retire(self, ee: ExecutionEnvironment) -> None:
        """Out of routing now; its shutdown runs in the background and is finished at stop."""
        self.ees.pop(ee.ee_id, None)
        self._spawn(ee.shutdown(), finish_on_stop=True)

    async def stop(self) -> None:
        """One stop, owned by the first caller; later callers await the same one."""
        if self._stop_task is None:
            self._stopping = True
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        """Every EE at once, those still in their init included (a cancelled scale-out shuts
        its EEs down through the same owned shutdown): one after the other, a scale-out's
        inits would hold up the ready EEs' stop by seconds, past the teardown's bound."""
        for task in list(self._tasks):
            task.cancel()
        # A retirement can still come in while this waits (an EE turning unhealthy as its
        # processes go): wait until none is left, and every EE is down.
        while self._tasks or self._finishing or self.ees:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(
                    *self._tasks,
                    *self._finishing,
                    *(ee.shutdown() for ee in list(self.ees.values())),
                    return_exceptions=True,
                )
            self.ees.clear()

    def init_summary(self) -> dict[str, float | int | None]:
        """How many EEs this arm initialised and how long their inits took (extension init +
        runtime init, as Lambda's Init Duration): the cost behind every cold start."""
        times = sorted(self.init_ms)

        def pick(q: float) -> float | None:
            return round(times[min(len(times) - 1, int(q * len(times)))], 1) if times else None

        return {"count": len(times), "p50_ms": pick(0.5), "p95_ms": pick(0.95), "max_ms": pick(1.0)}

    def ready_ees(self) -> list[ExecutionEnvironment]:
        return [ee for ee in self.ees.values() if ee.state is State.READY]

    def sample(self) -> dict[str, Any]:
        """The 1 s sample: gauges as maxima over the window, counters as counts within it."""
        ees = {ee.ee_id: {"concurrency": ee.in_flight.take_max()} for ee in self.ready_ees()}
        sample: dict[str, Any] = {
            contract.CONCURRENT_EXECUTIONS: self.concurrency.take_max(),
            contract.EXECUTION_ENVIRONMENTS: len(ees),
            **self.counters.take(),
            "ees": ees,
        }
        return sample


class StandardModel(FunctionModel):
    """Standard Lambda: one request per EE, cold starts on the request path, warm reuse."""

    def __init__(
        self,
        arm: str,
        make_settings: EESettingsFactory,
        settings: StandardSettings,
        init_slots: asyncio.Semaphore | None = None,
    ) -> None:
        super().__init__(arm, make_settings, init_slots)
        self.settings = settings
        self._idle: list[ExecutionEnvironment] = []
        self._last_used: dict[str, float] = {}

    async def start(self) -> None:
        self._spawn(self._reap())

    def _take_idle(self) -> ExecutionEnvironment | None:
        while self._idle:
            ee = self._idle.pop()  # the most recently used: warmest, as Lambda prefers
            if ee.state is State.READY:
                return ee
        return None

    async def _route(self, payload: bytes, request_id: str) -> bytes:
        if self.concurrency.value > self.settings.concurrency_limit:
            raise Throttled()
        ee = self._take_idle()
        if ee is None:
            self.counters.add(contract.COLD_STARTS)
            ee = await self._new_ee(None)
        try:
            return await ee.invoke(payload, request_id)
        finally:
            if ee.state is State.READY and not self._stopping:
                self._last_used[ee.ee_id] = time.monotonic()
                self._idle.append(ee)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            cutoff = time.monotonic() - self.settings.idle_timeout_s
            stale = [ee for ee in self._idle if self._last_used.get(ee.ee_id, 0) < cutoff]
            for ee in stale:
                self._idle.remove(ee)
                self._retire(ee)


class ManagedModel(FunctionModel):
    """Lambda Managed Instances: slots per EE, least-loaded routing, throttle when full,
    and a scaler that adds EEs asynchronously when utilisation passes its target."""

    def __init__(
        self,
        arm: str,
        make_settings: EESettingsFactory,
        settings: ManagedSettings,
        init_slots: asyncio.Semaphore | None = None,
    ) -> None:
        super().__init__(arm, make_settings, init_slots)
        self.settings = settings
        self._demand = WindowMax()  # what the scaler sees: in-flight peaks plus throttles
        self._throttled_since_tick = 0
        self._starting = 0
        self._over_since: float | None = None
        self._under_since: float | None = None
        self._wanted = 0

    async def start(self) -> None:
        """At least min_ees EEs ready before any traffic, as a version becomes ACTIVE."""
        await self._add_ees(self.settings.min_ees)
        self._spawn(self._scale())

    async def _add_ees(self, count: int) -> None:
        self._starting += count
        try:
            results = await asyncio.gather(
                *(self._new_ee(self.settings.slots_per_ee) for _ in range(count)),
                return_exceptions=True,
            )
        finally:
            self._starting -= count
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures and len(failures) == len(results) and not self.ready_ees():
            raise failures[0]
        for failure in failures:
            logger.warning("%s: an EE failed to start: %s", self.arm, failure)

    async def _route(self, payload: bytes, request_id: str) -> bytes:
        candidates = [ee for ee in self.ready_ees() if ee.idle_slots > 0]
        if not candidates:
            self._throttled_since_tick += 1
            raise Throttled()
        ee = max(candidates, key=lambda e: e.idle_slots)
        self._demand.add(1)
        try:
            return await ee.invoke(payload, request_id)
        finally:
            self._demand.add(-1)

    def desired_ees(self, peak_demand: int) -> int:
        per_ee = self.settings.slots_per_ee * self.settings.target_utilisation
        wanted = math.ceil(peak_demand / per_ee) if peak_demand else 0
        return max(self.settings.min_ees, min(self.settings.max_ees, wanted))

    async def _scale(self) -> None:
        """Looks every 0.5 s. Saturation, even for a moment, is remembered: the scaler acts on
        the highest demand it saw once its reaction delay has passed (as the real scaler acts
        asynchronously on what it measured). Scale-in needs a sustained lull."""
        while True:
            await asyncio.sleep(0.5)
            current = len(self.ready_ees()) + self._starting
            # Throttled requests are demand too, but a client that retries at once is counted
            # on every retry: taken at face value, a few spinning users would ask for max_ees.
            # So throttles count for at most twice the capacity the scaler can already see.
            slots = current * self.settings.slots_per_ee
            demand = self._demand.take_max() + min(self._throttled_since_tick, 2 * slots)
            self._throttled_since_tick = 0
            desired = self.desired_ees(demand)
            now = time.monotonic()
            if desired > current:
                self._under_since = None
                self._over_since = self._over_since or now
                self._wanted = max(self._wanted, desired)
            if self._over_since is not None:
                if now - self._over_since >= self.settings.scale_delay_s:
                    wanted, self._wanted, self._over_since = self._wanted, 0, None
                    if wanted > current:
                        logger.info("%s: scaling out %d -> %d EEs", self.arm, current, wanted)
                        self._spawn(self._add_ees(wanted - current))
                continue
            if desired < current and not self._starting:
                self._under_since = self._under_since or now
                if now - self._under_since >= self.settings.scale_down_after_s:
                    self._under_since = now
                    idle = [ee for ee in self.ready_ees() if ee.in_flight.value == 0]
                    if idle:
                        self._retire(idle[-1])
            else:
                self._under_since = None

    def sample(self) -> dict[str, Any]:
        sample = super().sample()
        per_ee = [ee["concurrency"] for ee in sample["ees"].values()]
        sample[contract.EE_CONCURRENCY] = max(per_ee, default=0)
        sample[contract.EE_CONCURRENCY_LIMIT] = self.settings.slots_per_ee
        return sample
