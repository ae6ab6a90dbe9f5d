"""Benchmark of local cold starts (issue #15 Build 3): prints each phase, asserts nothing.

For N in --at (default 1 and 100): a fresh local stack with the standard arm only, then N
requests at once (sleep_ms=0, one query), each needing its own new execution environment, as
a burst of cold starts on AWS. Per phase, p50 and max over the N environments:

- queued: waiting for an init slot (local/function_models.py `init_slots`), not on AWS;
- launcher to PgBouncer up: the extension's launcher starts and starts PgBouncer (PgBouncer's
  own "process up" log line, ms resolution);
- PgBouncer up to extensions ready: the extension's credential check through the pooler and
  its /next (the extension phase ends when every extension called /next);
- runtime start: the runtime process until its workers poll /next (the handler's init);
- first invoke: the request's latency minus everything before the invoke.
Then the stack's CPU seconds per cold start (local/cpu.py over the burst, whole machine too).

Usage: uv run python scripts/bench_cold_start.py [--at 1,100]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.cpu import CpuSampler
from local.settings import StackSettings, StandardSettings
from local.stack import running_stack

PROCESS_UP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[\d+\] LOG process up")


def pgbouncer_up_at(extensions_log: Path) -> float | None:
    """Epoch seconds of PgBouncer's 'process up' line in an EE's extensions.log."""
    try:
        for line in extensions_log.read_text(errors="replace").splitlines():
            if match := PROCESS_UP.match(line):
                moment = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f")
                return moment.replace(tzinfo=UTC).timestamp()
    except OSError:
        return None
    return None


async def burst(url: str, count: int) -> list[tuple[float, float, int]]:
    """`count` requests at once: (sent at, latency ms, status) each."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=300)
    ) as session:

        async def one() -> tuple[float, float, int]:
            sent = time.time()
            start = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                return sent, (time.perf_counter() - start) * 1000, response.status

        return list(await asyncio.gather(*(one() for _ in range(count))))


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    return f"p50 {ordered[(len(ordered) + 1) // 2 - 1]:7.0f}  max {ordered[-1]:7.0f}"


def measure(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(
            run_dir=Path(tmp) / "run",
            arms=("standard",),
            standard=StandardSettings(concurrency_limit=max(count, 10)),
            max_connections=max(2 * count + 50, 200),
        )
        with running_stack(settings) as runner:
            stack = runner.stack
            cpu = CpuSampler(tag=stack.tag)
            cpu.sample()
            started = time.monotonic()
            results = asyncio.run(burst(stack.api_url + "standard?sleep_ms=0&queries=1", count))
            wall = time.monotonic() - started
            used = cpu.sample() or {}
            ees = list(stack.models["standard"].ees.values())
            rows = []
            for ee in ees:
                up = pgbouncer_up_at(ee.settings.work_dir / "extensions.log")
                rows.append((ee, up))
    sent_first = min(sent for sent, _, _ in results)
    statuses = sorted({status for _, _, status in results})
    queued = [(ee.started_at - ee.created_at) * 1000 for ee, _ in rows if ee.started_at]
    to_up = [(up - ee.started_at) * 1000 for ee, up in rows if up and ee.started_at]
    to_ready = [
        ee.phase_ms["extensions"] - (up - ee.started_at) * 1000
        for ee, up in rows
        if up and ee.started_at and "extensions" in ee.phase_ms
    ]
    runtime = [ee.phase_ms["runtime"] for ee, _ in rows if "runtime" in ee.phase_ms]
    # the invoke begins when the EE is ready: latency minus (ready - sent); EEs and requests
    # pair up in order of readiness and of arrival only on average, so this is the spread
    ready = sorted(
        (ee.started_at + ee.init_ms / 1000 - sent_first) * 1000 for ee, _ in rows if ee.started_at
    )
    latencies = sorted(latency for _, latency, _ in results)
    invoke = [max(lat - r, 0.0) for lat, r in zip(latencies, ready, strict=False)]
    cpu_s = (used.get("stack_cpu_percent", 0.0) / 100) * int(used.get("cores", 1)) * wall
    host_s = (used.get("cpu_percent", 0.0) / 100) * int(used.get("cores", 1)) * wall
    print(f"== {count} cold start(s) at once: {len(ees)} EEs, statuses {statuses}")
    print(f"  all answered after          {wall * 1000:7.0f} ms")
    print(f"  request latency             {spread(latencies)} ms")
    print(f"  queued for an init slot     {spread(queued)} ms")
    print(f"  launcher -> PgBouncer up    {spread(to_up)} ms")
    print(f"  PgBouncer up -> ext. ready  {spread(to_ready)} ms")
    print(f"  runtime start (init)        {spread(runtime)} ms")
    print(f"  first invoke                {spread(invoke)} ms")
    print(
        f"  stack CPU {cpu_s:.2f} s = {cpu_s / max(count, 1) * 1000:.0f} ms per cold start "
        f"(whole machine {host_s:.2f} s over the burst)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--at", default="1,100", help="comma-separated burst sizes")
    args = parser.parse_args()
    for count in (int(x) for x in args.at.split(",") if x):
        measure(count)


if __name__ == "__main__":
    main()
