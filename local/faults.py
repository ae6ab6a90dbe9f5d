"""Faults injected into a local run: what RDS Proxy is sold on surviving, made to happen.

`--fault KIND@SECONDS` (repeatable) breaks one thing that many seconds into the load:
- db-restart: PostgreSQL's fast restart (every server connection cut, back within seconds),
  as clients see an Aurora writer reboot;
- pooler-kill: SIGKILL of one in-EE PgBouncer per arm that has one (its extension exits, the
  EE turns unhealthy and is replaced, as Lambda replaces an EE whose extension died);
- runtime-kill: SIGKILL of the runtime worker serving a request, in one EE per arm.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from input_errors import InputError
from local.processes import child_pids, process_state

if TYPE_CHECKING:
    from local.execution_environment import ExecutionEnvironment
    from local.stack import LocalStack

FAULT_KINDS = ("db-restart", "pooler-kill", "runtime-kill")


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float

    def __str__(self) -> str:
        return f"{self.kind}@{self.at_s:g}"


def parse_fault(text: str) -> Fault:
    kind, sep, at = text.partition("@")
    if kind not in FAULT_KINDS or not sep:
        raise InputError(
            f"--fault {text!r}: give KIND@SECONDS, KIND one of {', '.join(FAULT_KINDS)}"
            " (for example db-restart@20)"
        )
    try:
        at_s = float(at)
    except ValueError:
        raise InputError(f"--fault {text!r}: {at!r} is not a number of seconds") from None
    if at_s < 0:
        raise InputError(f"--fault {text!r}: the time must not be negative")
    return Fault(kind, at_s)


async def inject(stack: LocalStack, kind: str) -> dict[str, str]:
    """Breaks it now; returns, per arm (or `database`), what was done."""
    if kind == "db-restart":
        away = await asyncio.to_thread(stack.database.restart)
        return {"database": f"PostgreSQL fast restart, back after {away:.1f} s"}
    done: dict[str, str] = {}
    for arm, model in stack.models.items():
        ees = [ee for ee in model.ready_ees() if ee.settings.layer_dir is not None]
        if kind == "runtime-kill":
            ees = [ee for ee in model.ready_ees() if ee.in_flight.value > 0] or ees
        if not ees:
            continue
        ee = ees[0]
        pid = _pgbouncer_of(ee) if kind == "pooler-kill" else _busy_worker_of(ee)
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        done[arm] = f"SIGKILL to pid {pid} in {ee.ee_id}"
    return done


def _pgbouncer_of(ee: ExecutionEnvironment) -> int | None:
    for launcher in ee.extension_procs:
        for pid in child_pids(launcher.pid):
            if _exe_name(pid) == "pgbouncer":
                return pid
    return None


def _busy_worker_of(ee: ExecutionEnvironment) -> int | None:
    """A standard EE's runtime is its one worker; a managed EE's workers are its children."""
    runtime = ee.runtime_proc
    if runtime is None or process_state(runtime.pid) is None:
        return None
    if not ee.settings.max_concurrency:
        return runtime.pid
    workers = child_pids(runtime.pid)  # which one serves is not visible from here: any one
    return workers[0] if workers else None


def _exe_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/exe").resolve(strict=True).name
    except OSError:
        return ""
