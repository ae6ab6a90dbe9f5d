"""Benchmark of local cold starts (issue #15 Build 3): prints each phase, asserts nothing.

For N in --at (default 1 and 100): a fresh local stack with the standard arm only, then N
requests at once (sleep_ms=0, one query), each needing its own new execution environment, as
a burst of cold starts on AWS. Per phase, p50 and max wall time over the N environments:

- queued: waiting for an init slot (local/function_models.py `init_slots`), not on AWS;
- launcher: the extension's process starts until it registers with the Extensions API;
- the extension's own init steps, from its "init steps:" log line: `pgbouncer --version`,
  PgBouncer's start until it listens, the init credential check (a login to the database:
  through PgBouncer now, straight to it before, which also logged in to PgBouncer's console);
- runtime start: the runtime process until its workers poll /next (the handler's init);
- first invoke: the request's latency minus everything before the invoke.

Then CPU per cold start, by process (exact: each thread's schedstat, plus what reaped children
used), over the burst: the launchers (with the `pgbouncer --version` they ran), the PgBouncers,
the runtimes, PostgreSQL (every login and query), the zygotes that fork, and this process (the
EEs' APIs, the gateway, the models; the burst's HTTP client is counted apart). The whole
machine's CPU over the burst is printed too; on a shared machine it includes other users'.

Usage: uv run python scripts/bench_cold_start.py [--at 1,100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.cpu import read_host_jiffies
from local.execution_environment import ExecutionEnvironment
from local.processes import TAG_ENV, child_pids
from local.settings import StackSettings, StandardSettings
from local.stack import LocalStack, running_stack

STEPS_LINE = re.compile(r"\[pgbouncer-extension\] init steps: (.*)$", re.MULTILINE)
STEP = re.compile(r"([a-z][a-z -]*?) ([\d.]+) ms")
TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")
# The extension's steps as its log names them, and how this benchmark prints them.
EXTENSION_STEPS = {
    "version": "pgbouncer --version",
    "pgbouncer start": "PgBouncer start",
    "database login": "init credential check",
    "console login": "PgBouncer console login",  # until the check went through PgBouncer
}


def extension_steps(extensions_log: Path) -> dict[str, float]:
    """The extension's "init steps:" line of an EE's extensions.log, in ms per step."""
    try:
        match = STEPS_LINE.search(extensions_log.read_text(errors="replace"))
    except OSError:
        return {}
    return {name: float(ms) for name, ms in STEP.findall(match.group(1))} if match else {}


def cpu_ns(pid: int) -> int:
    """CPU this process has used, in ns: its threads' run time (schedstat, exact) plus what its
    reaped children used (cutime + cstime: `pgbouncer --version`, PostgreSQL's backends)."""
    total = 0
    try:
        for task in (Path("/proc") / str(pid) / "task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return total + int((int(fields[13]) + int(fields[14])) * TICK_NS)


def tagged(tag: str) -> list[int]:
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def process_kinds(stack: LocalStack, ees: Iterable[ExecutionEnvironment]) -> dict[int, str]:
    """Which part of a cold start each of the stack's processes is."""
    kinds: dict[int, str] = {os.getpid(): "this process"}
    for ee in ees:
        for proc in ee.extension_procs:
            kinds[proc.pid] = "launchers"
            for child in child_pids(proc.pid):
                kinds[child] = "PgBouncers"
        if ee.runtime_proc is not None:
            kinds[ee.runtime_proc.pid] = "runtimes"
            for child in child_pids(ee.runtime_proc.pid):
                kinds[child] = "runtimes"
    for zygote in stack.zygotes():
        kinds[zygote] = "zygotes"
    # PostgreSQL writes its process titles over its environment: its backends are found as
    # the postmaster's children, not by the stack's tag
    if stack.database.proc is not None:
        for pid in [stack.database.proc.pid, *child_pids(stack.database.proc.pid)]:
            kinds[pid] = "PostgreSQL"
    return kinds


@dataclass
class CpuSnapshot:
    per_pid: dict[int, int]
    host_busy: int

    @classmethod
    def take(cls, stack: LocalStack) -> CpuSnapshot:
        pids = {os.getpid(), *tagged(stack.tag)}
        if stack.database.proc is not None:
            pids |= {stack.database.proc.pid, *child_pids(stack.database.proc.pid)}
        return cls({pid: cpu_ns(pid) for pid in pids}, read_host_jiffies()[0])


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
        return "p50     n/a  max     n/a"
    ordered = sorted(values)
    return f"p50 {ordered[(len(ordered) + 1) // 2 - 1]:7.0f}  max {ordered[-1]:7.0f}"


def log_logins(stack: LocalStack) -> int:
    """Turns on PostgreSQL's log_connections; returns where its log ends now."""
    with stack.database.admin_connect() as conn:
        conn.execute("alter system set log_connections = on")
        conn.execute("select pg_reload_conf()")
    time.sleep(0.5)  # the postmaster rereads its configuration when it gets to it
    return stack.database.log_file.stat().st_size


def logins_since(stack: LocalStack, offset: int, role: str) -> int:
    """Logins of `role` PostgreSQL has logged since `offset` of its log."""
    with stack.database.log_file.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    return text.count(f"connection authorized: user={role} ")


def measure(count: int, slots_per_core: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(
            run_dir=Path(tmp) / "run",
            arms=("standard",),
            standard=StandardSettings(concurrency_limit=max(count, 10)),
            max_connections=max(2 * count + 50, 200),
            init_slots_per_core=slots_per_core,
        )
        with running_stack(settings) as runner:
            stack = runner.stack
            log_offset = log_logins(stack)
            before = CpuSnapshot.take(stack)
            started = time.monotonic()
            client_started = time.thread_time_ns()
            results = asyncio.run(burst(stack.api_url + "standard?sleep_ms=0&queries=1", count))
            client_ns = time.thread_time_ns() - client_started
            wall = time.monotonic() - started
            ees = list(stack.models["standard"].ees.values())
            kinds = process_kinds(stack, ees)
            after = CpuSnapshot.take(stack)
            sessions = logins_since(stack, log_offset, stack.roles["standard"].name)
            steps = [extension_steps(ee.settings.work_dir / "extensions.log") for ee in ees]
    by_kind: dict[str, float] = {}
    for pid, now in after.per_pid.items():
        kind = kinds.get(pid, "other tagged")
        by_kind[kind] = by_kind.get(kind, 0.0) + (now - before.per_pid.get(pid, 0)) / 1e6
    by_kind["this process"] = by_kind.get("this process", 0.0) - client_ns / 1e6
    host_ms = (after.host_busy - before.host_busy) * TICK_NS / 1e6
    stack_ms = sum(by_kind.values())

    statuses = sorted({status for _, _, status in results})
    sent_first = min(sent for sent, _, _ in results)
    queued = [(ee.started_at - ee.created_at) * 1000 for ee in ees if ee.started_at]
    launcher = [
        (ee.marks["registered"] - ee.marks["extensions_spawned"]) * 1000
        for ee in ees
        if {"registered", "extensions_spawned"} <= ee.marks.keys()
    ]
    runtime = [ee.phase_ms["runtime"] for ee in ees if "runtime" in ee.phase_ms]
    init = [ee.init_ms for ee in ees if ee.init_ms]
    # the invoke begins when the EE is ready: latency minus (ready - sent); EEs and requests
    # pair up in order of readiness and of arrival only on average, so this is the spread
    ready = sorted(
        (ee.started_at + ee.init_ms / 1000 - sent_first) * 1000 for ee in ees if ee.started_at
    )
    latencies = sorted(latency for _, latency, _ in results)
    invoke = [max(lat - r, 0.0) for lat, r in zip(latencies, ready, strict=False)]
    per = max(count, 1)
    slots = slots_per_core * (os.cpu_count() or 1)
    print(
        f"== {count} cold start(s) at once: {len(ees)} EEs, statuses {statuses}, {slots} init slots"
    )
    print(f"  all answered after            {wall * 1000:7.0f} ms")
    print(f"  request latency               {spread(latencies)} ms")
    print(f"  queued for an init slot       {spread(queued)} ms")
    print(f"  launcher (start to register)  {spread(launcher)} ms")
    for key, label in EXTENSION_STEPS.items():
        print(f"  {label:<29} {spread([s[key] for s in steps if key in s])} ms")
    print(f"  runtime start (init)          {spread(runtime)} ms")
    print(f"  whole init (Init Duration)    {spread(init)} ms")
    print(f"  first invoke                  {spread(invoke)} ms")
    print(f"  PostgreSQL logins per cold start: {sessions / per:.2f}")
    print(f"  CPU per cold start: {stack_ms / per:.1f} ms (the stack's processes)")
    for kind in sorted(by_kind, key=lambda k: -by_kind[k]):
        print(f"    {kind:<28} {by_kind[kind] / per:7.1f} ms")
    print(f"    {'(burst HTTP client)':<28} {client_ns / 1e6 / per:7.1f} ms, not counted")
    print(
        f"  whole machine over the burst: {host_ms / 1000:.2f} CPU-s"
        f" ({host_ms / per:.0f} ms per cold start; load average {os.getloadavg()[0]:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--at", default="1,100", help="comma-separated burst sizes")
    parser.add_argument(
        "--init-slots-per-core",
        type=int,
        default=StackSettings.init_slots_per_core,
        help="EE inits at once per core (the stack's default)",
    )
    args = parser.parse_args()
    for count in (int(x) for x in args.at.split(",") if x):
        measure(count, args.init_slots_per_core)


if __name__ == "__main__":
    main()
