"""Benchmark of the local emulator itself (issue: local stack): prints figures, asserts nothing.

1. Overhead: trivial requests (sleep_ms=0&queries=0) through the gateway into real EEs:
   invocations/s at a concurrency, and p50/p99 latency added over calling the handler in-process.
2. Scale: managed at ~1,000 concurrent slots, standard at 300 concurrent EEs, errors counted,
   peak memory (RSS of every process of the stack, ours included).

Usage: uv run python scripts/bench_local.py [--part all|overhead|managed|standard]
       [--requests 5000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.processes import tagged_pids
from local.settings import ManagedSettings, StackSettings, StandardSettings
from local.stack import running_stack


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def drive(
    url: str, total: int, concurrency: int
) -> tuple[list[float], dict[int, int], float]:
    """`concurrency` closed-loop clients share `total` requests; latencies in ms."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = total
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=300)
    ) as session:

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                latencies.append((time.perf_counter() - start) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return latencies, statuses, time.perf_counter() - start


def in_process_handler_ms(samples: int = 2000) -> list[float]:
    """The same trivial request, calling the handler as a function: the baseline."""
    os.environ.setdefault("DB_USER", "bench")
    os.environ.setdefault("DB_PASSWORD", "unused")
    from functions.app import handler

    event = {"queryStringParameters": {"sleep_ms": "0", "queries": "0"}}
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        handler.handler(event, None)
        times.append((time.perf_counter() - start) * 1000)
    return times


@contextmanager
def peak_rss(tag_of: Any) -> Iterator[dict[str, float]]:
    """Samples the summed PSS (shared pages split between sharers, so 1,000 forked workers are
    not counted 1,000 times) of the stack's processes and our own every 2 s."""
    result = {"peak_mib": 0.0}
    done = threading.Event()

    def rss_kib(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def loop() -> None:
        while not done.is_set():
            tag = tag_of()
            pids = [os.getpid(), *(tagged_pids(tag) if tag else [])]
            total = sum(rss_kib(pid) for pid in pids) / 1024
            result["peak_mib"] = max(result["peak_mib"], total)
            done.wait(2.0)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()


def overhead(requests: int, concurrency: int) -> None:
    baseline = in_process_handler_ms()
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(run_dir=Path(tmp) / "run", arms=("managed",))
        with running_stack(settings) as runner:
            url = runner.stack.api_url + "managed?sleep_ms=0&queries=0"
            asyncio.run(drive(url, 500, concurrency))  # warm every worker
            lat_1, _, _ = asyncio.run(drive(url, 1000, 1))
            lat_c, statuses, wall = asyncio.run(drive(url, requests, concurrency))
    base_p50, base_p99 = percentile(baseline, 50), percentile(baseline, 99)
    print("== emulator overhead (managed arm, 3 EEs x 16 workers, trivial request)")
    print(f"in-process handler:          p50 {base_p50:.3f} ms  p99 {base_p99:.3f} ms")
    print(
        f"through gateway, 1 client:   p50 {percentile(lat_1, 50):.3f} ms  p99 "
        f"{percentile(lat_1, 99):.3f} ms  -> added p50 {percentile(lat_1, 50) - base_p50:.3f} ms,"
        f" p99 {percentile(lat_1, 99) - base_p99:.3f} ms (targets: <= 2 ms p50, stretch 1 ms)"
    )
    print(
        f"through gateway, {concurrency} clients: {requests / wall:.0f} invocations/s over "
        f"{requests} requests, p50 {percentile(lat_c, 50):.2f} ms, statuses {statuses} "
        "(targets: >= 500/s, stretch 1000/s)"
    )
    print(f"mean single-client latency {statistics.fmean(lat_1):.3f} ms")


def scale_managed(slots: int = 64, ees: int = 16, concurrent: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(
            run_dir=Path(tmp) / "run",
            arms=("managed",),
            managed=ManagedSettings(slots_per_ee=slots, min_ees=ees, max_ees=ees),
            max_connections=2000,
        )
        holder: dict[str, str] = {}
        with peak_rss(lambda: holder.get("tag")) as rss:
            start = time.perf_counter()
            with running_stack(settings) as runner:
                holder["tag"] = runner.stack.tag
                up = time.perf_counter() - start
                url = runner.stack.api_url + "managed?sleep_ms=2000"
                _, statuses, wall = asyncio.run(drive(url, concurrent, concurrent))
                assert runner.stack.recorder is not None
                runner.call(runner.stack.recorder.next_sample(), timeout=10)
                peaks = runner.stack.recorder.peaks["managed"]
    print(f"== managed at {slots * ees} slots ({ees} EEs x {slots}), {concurrent} concurrent")
    print(
        f"stack up in {up:.1f} s; {concurrent} requests in {wall:.1f} s; statuses {statuses};"
        f" peak ConcurrentExecutions {peaks.get('ConcurrentExecutions')};"
        f" peak DatabaseConnections {peaks.get('DatabaseConnections')};"
        f" peak memory (PSS) {rss['peak_mib']:.0f} MiB"
    )


def scale_standard(concurrent: int = 300, idle_s: float = 10.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(
            run_dir=Path(tmp) / "run",
            arms=("standard",),
            standard=StandardSettings(concurrency_limit=1000),
            max_connections=2000,
        )
        holder: dict[str, str] = {}
        with peak_rss(lambda: holder.get("tag")) as rss, running_stack(settings) as runner:
            holder["tag"] = runner.stack.tag
            url = runner.stack.api_url + "standard?sleep_ms=2000"
            _, statuses, wall = asyncio.run(drive(url, concurrent, concurrent))
            assert runner.stack.recorder is not None
            runner.call(runner.stack.recorder.next_sample(), timeout=10)
            peaks = runner.stack.recorder.peaks["standard"]
            ees = len(runner.stack.models["standard"].ees)
            # What watching idle EEs costs: this process hosts the stack's loop (and nothing
            # else now), so its CPU time while every EE sits idle is the watching's bill.
            cpu_before, idle_start = time.process_time(), time.perf_counter()
            time.sleep(idle_s)
            idle_cpu = (time.process_time() - cpu_before) / (time.perf_counter() - idle_start)
    print(f"== standard, {concurrent} concurrent requests (each needs its own EE)")
    print(
        f"{concurrent} requests in {wall:.1f} s (cold starts included); statuses {statuses};"
        f" EEs {ees}; peak DatabaseConnections {peaks.get('DatabaseConnections')};"
        f" peak memory (PSS) {rss['peak_mib']:.0f} MiB;"
        f" stack process CPU with {ees} idle EEs {idle_cpu:.1%} of a core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--part", choices=("all", "overhead", "managed", "standard"), default="all")
    args = parser.parse_args()
    if args.part in ("all", "overhead"):
        overhead(args.requests, args.concurrency)
    if args.part in ("all", "managed"):
        scale_managed()
    if args.part in ("all", "standard"):
        scale_standard()
    print(json.dumps({"cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
