"""Memory, init time and the emulator's own latency of one local execution environment, per runtime.

Starts the real local stack with one arm and one EE (real PostgreSQL, the layer's PgBouncer
extension, the runtime under its AWS client), then:
- init: the EE's init time (extensions, then the runtime until its polls are open), and the
  CPU seconds the runtime had used by then (a figure the machine's load does not change);
- memory: PSS of the EE's runtime (the process and its forked workers: Python forks one per
  slot, Node runs one process with worker threads), idle and while every slot holds a seed
  request (connect, select, sleep, select, close), per EE and per slot; PgBouncer and the
  extension are the same for both runtimes and reported apart;
- added latency: N sequential no-op requests (sleep_ms=0, queries=0) through the gateway; the
  client's round trip minus the handler's own total_ms is what the gateway, the Runtime API
  and the runtime client add (p50, p90, max).

    uv run python scripts/ee_memory.py --runtime nodejs --slots 64
    uv run python scripts/ee_memory.py --runtime python --slots 16
    uv run python scripts/ee_memory.py --runtime nodejs --standard   # one standard EE

Prints one JSON object. PSS divides shared pages among the processes that map them, so the
per-EE sum is what the EE costs the machine; wall-clock figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from local.execution_environment import ExecutionEnvironment
from local.processes import child_pids
from local.settings import ManagedSettings, StackSettings
from local.stack import running_stack


def pss_mib(pid: int, field: str = "Pss") -> float:
    """PSS (or RSS) of one process from /proc/<pid>/smaps_rollup (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runtime_cpu_s(ee: ExecutionEnvironment) -> float:
    """CPU the runtime has used so far: after init, what its init cost, whatever the load."""
    assert ee.runtime_proc is not None
    return sum(cpu_s(p) for p in [ee.runtime_proc.pid, *child_pids(ee.runtime_proc.pid)])


def runtime_pss(ee: ExecutionEnvironment, field: str = "Pss") -> float:
    assert ee.runtime_proc is not None
    pids = [ee.runtime_proc.pid, *child_pids(ee.runtime_proc.pid)]
    return sum(pss_mib(p, field) for p in pids)


def pooler_pss(ee: ExecutionEnvironment) -> float:
    total = 0.0
    for proc in ee.extension_procs:
        total += pss_mib(proc.pid) + sum(pss_mib(c) for c in child_pids(proc.pid))
    return total


async def measure(url: str, ee: ExecutionEnvironment, slots: int, requests: int) -> dict[str, Any]:
    init_cpu = runtime_cpu_s(ee)
    idle = runtime_pss(ee)
    async with aiohttp.ClientSession() as http:
        added: list[float] = []
        for _ in range(requests):
            start = time.perf_counter()
            async with http.get(url, params={"sleep_ms": "0", "queries": "0"}) as resp:
                body = await resp.json()
            added.append((time.perf_counter() - start) * 1000 - float(body["total_ms"]))
        peaks: list[float] = []

        async def one() -> int:
            async with http.get(url, params={"sleep_ms": "3000", "queries": "2"}) as resp:
                return resp.status

        load = [asyncio.create_task(one()) for _ in range(slots)]
        await asyncio.sleep(2.0)  # every slot connected and sleeping
        peaks.append(runtime_pss(ee))
        rss = runtime_pss(ee, "Rss")  # counts shared pages once per process
        pooler = pooler_pss(ee)
        statuses = await asyncio.gather(*load)
    busy = max(peaks)
    added.sort()
    return {
        "runtime_init_cpu_s": round(init_cpu, 2),
        "runtime_pss_idle_mib": round(idle, 1),
        "runtime_pss_busy_mib": round(busy, 1),
        "runtime_pss_per_slot_busy_mib": round(busy / slots, 2),
        "runtime_rss_sum_busy_mib": round(rss, 1),
        "pooler_and_extension_pss_mib": round(pooler, 1),
        "ee_pss_busy_mib": round(busy + pooler, 1),
        "busy_ok": sum(1 for s in statuses if s == 200),
        "added_latency_ms": {
            "n": len(added),
            "p50": round(statistics.median(added), 2),
            "p90": round(added[int(0.9 * (len(added) - 1))], 2),
            "max": round(added[-1], 2),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("python", "nodejs"), default="nodejs")
    parser.add_argument("--slots", type=int, default=64, help="managed slots per EE")
    parser.add_argument("--standard", action="store_true", help="one standard EE instead")
    parser.add_argument("--requests", type=int, default=50, help="no-op requests for latency")
    args = parser.parse_args()
    arm = "standard" if args.standard else "managed"
    slots = 1 if args.standard else args.slots
    with tempfile.TemporaryDirectory(prefix="ee-memory-") as tmp:
        settings = StackSettings(
            run_dir=Path(tmp),
            arms=(arm,),
            managed=ManagedSettings(slots_per_ee=slots, min_ees=1, max_ees=1),
            runtime=args.runtime,
        )
        with running_stack(settings) as runner:
            stack = runner.stack
            model = stack.models[arm]
            url = f"{stack.api_url}{arm}"
            if args.standard:  # the first request makes the EE (a cold start)
                runner.call(_warm(url), timeout=60)
            ee = next(iter(model.ees.values()))
            result = runner.call(measure(url, ee, slots, args.requests), timeout=300)
            result = {
                "runtime": args.runtime,
                "arm": arm,
                "slots_per_ee": slots,
                "ee_init_ms": round(ee.init_ms, 1),
                "init_phases_ms": {k: round(v, 1) for k, v in ee.phase_ms.items()},
                **result,
            }
    print(json.dumps(result, indent=2))
    return 0


async def _warm(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(url, params={"sleep_ms": "0"}) as r:
        await r.read()


if __name__ == "__main__":
    raise SystemExit(main())
