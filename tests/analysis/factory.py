"""Synthetic but realistic run folders: the files `poolbench run` writes, in their real shapes.

Locust CSV headers are those of Locust 2.47 (taken from a real headless run); samples follow
docs/contracts.md. Everything is deterministic so tests can recompute expectations from the
raw files.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

STATS_HEADER = [
    "Type", "Name", "Request Count", "Failure Count", "Median Response Time",
    "Average Response Time", "Min Response Time", "Max Response Time", "Average Content Size",
    "Requests/s", "Failures/s", "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%",
    "99.9%", "99.99%", "100%",
]  # fmt: skip
HISTORY_HEADER = [
    "Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "66%", "75%",
    "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%", "Total Request Count",
    "Total Failure Count", "Total Median Response Time", "Total Average Response Time",
    "Total Min Response Time", "Total Max Response Time", "Total Average Content Size",
]  # fmt: skip
FAILURES_HEADER = ["Method", "Name", "Error", "Occurrences", "First Seen", "Last Seen"]
EXCEPTIONS_HEADER = ["Count", "Message", "Traceback", "Nodes"]

START = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ArmProfile:
    """How a synthetic arm behaves: `ees=None` is standard Lambda (one EE per request)."""

    requests: int = 1000
    failures: int = 0
    ees: int | None = None
    server_per_client: float = 1.0  # PgBouncer server connections per active client
    in_ee_pooler: bool = True  # False: one shared pooler (the proxy arm), no per-EE pools
    p50_ms: float = 5010.0
    p95_ms: float = 5080.0
    p99_ms: float = 5150.0


DEFAULT_ARMS = {
    "standard": ArmProfile(requests=1000, failures=0, ees=None, server_per_client=1.0),
    "managed": ArmProfile(requests=1000, failures=46, ees=3, server_per_client=0.25, p50_ms=5020.0),
}


@dataclass
class RunSpec:
    """Knobs of a synthetic run."""

    arms: dict[str, ArmProfile] = field(default_factory=lambda: dict(DEFAULT_ARMS))
    seconds: int = 60
    users: int = 40
    ramp_s: int = 5
    target: str = "local"
    start: datetime = START
    status: str = "completed"
    queries: int = 2
    with_pools: bool = True
    with_requests: bool = False
    with_host: bool = False
    """Add the recorder's `host` CPU object to each sample: 95 % for the first 20 s, then 40 %."""
    """Write requests/*.csv (per-request records) as Locust's processes do since #15."""


def concurrency_at(spec: RunSpec, second: int) -> int:
    """Users in flight: a ramp, then full load with a small dip every 7 s."""
    ramp = min(1.0, (second + 1) / spec.ramp_s)
    dip = 3 if second % 7 == 6 else 0
    return max(0, round(spec.users * ramp) - dip)


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def arm_sample(spec: RunSpec, profile: ArmProfile, second: int) -> dict[str, object]:
    """One arm's entry in a samples.jsonl line."""
    conc = concurrency_at(spec, second)
    ee_count = profile.ees if profile.ees is not None else max(conc, 1)
    per_ee = _split(conc, ee_count)
    busiest = max(per_ee, default=0)
    ees: dict[str, object] = {}
    db = 0
    if not profile.in_ee_pooler:
        ees = {f"ee-{i + 1}": {"concurrency": c} for i, c in enumerate(per_ee)}
        db = math.ceil(conc * profile.server_per_client) + 1
        per_ee = []
    for i, clients in enumerate(per_ee):
        active = math.ceil(clients * profile.server_per_client)
        idle = 1 if profile.ees is not None and clients else 0
        db += active + idle
        ees[f"ee-{i + 1}"] = {
            "concurrency": clients,
            "pool": {
                "cl_active": clients,
                "cl_waiting": 0,
                "sv_active": active,
                "sv_idle": idle,
                "sv_used": 0,
                "sv_login": 0,
                "maxwait": 0,
            },
        }
    entry: dict[str, object] = {
        "ConcurrentExecutions": conc,
        "ExecutionEnvironments": ee_count,
        "Invocations": conc // 5,
        "Errors": 0,
        "Throttles": 1 if profile.failures and second % 10 == 0 else 0,
        "ColdStarts": 0,
        "DatabaseConnections": db,
    }
    if profile.ees is not None:
        entry["ExecutionEnvironmentConcurrency"] = busiest
        entry["ExecutionEnvironmentConcurrencyLimit"] = 16
    if spec.with_pools:
        entry["ees"] = ees
    return entry


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _stats_row(name: str, kind: str, p: ArmProfile, seconds: int) -> list[object]:
    pct = [p.p50_ms, p.p50_ms, p.p50_ms, p.p50_ms, p.p95_ms, p.p95_ms, p.p99_ms, p.p99_ms,
           p.p99_ms, p.p99_ms, p.p99_ms]  # fmt: skip
    return [kind, name, p.requests, p.failures, p.p50_ms, p.p50_ms + 3.5, 5001.2, p.p99_ms,
            20.0, p.requests / seconds, p.failures / seconds, *pct]  # fmt: skip


def write_locust(run: Path, spec: RunSpec) -> None:
    """locust_stats.csv, _stats_history.csv, _failures.csv, _exceptions.csv."""
    stats = [_stats_row(arm, "GET", p, spec.seconds) for arm, p in spec.arms.items()]
    total = ArmProfile(
        requests=sum(p.requests for p in spec.arms.values()),
        failures=sum(p.failures for p in spec.arms.values()),
    )
    stats.append(_stats_row("Aggregated", "", total, spec.seconds))
    _write_csv(run / "locust_stats.csv", STATS_HEADER, stats)

    history: list[list[object]] = []
    t0 = int(spec.start.timestamp())
    history.append([t0, 0, "", "Aggregated", "0.000000", "0.000000", *["N/A"] * 11,
                    0, 0, 0, 0.0, 0, 0, 0])  # fmt: skip
    for second in range(1, spec.seconds + 1):
        users = concurrency_at(spec, second - 1)
        for arm, p in spec.arms.items():
            done = p.requests * second // spec.seconds
            failed = p.failures * second // spec.seconds
            pct = [p.p50_ms + (second % 3), *[p.p50_ms + 5] * 4, p.p95_ms, p.p95_ms,
                   p.p99_ms, p.p99_ms, p.p99_ms, p.p99_ms]  # fmt: skip
            history.append([t0 + second, users, "GET", arm, f"{p.requests / spec.seconds:.6f}",
                            f"{p.failures / spec.seconds:.6f}", *pct, done, failed, p.p50_ms,
                            p.p50_ms + 3.5, 5001.2, p.p99_ms, 20.0])  # fmt: skip
    _write_csv(run / "locust_stats_history.csv", HISTORY_HEADER, history)

    failures = [
        ["GET", arm, "HTTPError('500 Server Error: Internal Server Error')", p.failures,
         spec.start.strftime("%Y-%m-%dT%H:%M:%SZ"), spec.start.strftime("%Y-%m-%dT%H:%M:%SZ")]
        for arm, p in spec.arms.items() if p.failures
    ]  # fmt: skip
    _write_csv(run / "locust_failures.csv", FAILURES_HEADER, failures)
    _write_csv(run / "locust_exceptions.csv", EXCEPTIONS_HEADER, [])


REQUEST_COLUMNS = [
    "start", "arm", "latency_ms", "ok", "status", "ee", "worker", "cold", "init_age_ms",
    "connect_ms", "query_ms", "queries", "sleep_ms", "handler_ms", "process", "error",
]  # fmt: skip


def request_rows(spec: RunSpec, arm: str, profile: ArmProfile) -> list[list[object]]:
    """Deterministic records of one arm: latencies spread around the profile's p50, a slow
    cold-start first request per EE, every k-th request failing; standard connects each time
    through its own pooler (1.5 ms), managed's pool is warm (0.2 ms)."""
    rows: list[list[object]] = []
    t0 = spec.start.timestamp()
    ees = profile.ees or spec.users
    every = profile.requests // profile.failures if profile.failures else 0
    for i in range(profile.requests):
        ee = i % ees
        cold = i < ees
        start = t0 + (spec.seconds - 6) * i / profile.requests
        failed = bool(every) and (i + 1) % every == 0 and (i + 1) // every <= profile.failures
        connect = 1.5 if profile.ees is None else 0.2
        query = 0.8 + (i % 5) * 0.1
        sleep = 5000.0 + (i % 3) * 0.05
        latency = sleep + connect + query + 4.0 + (i * 37 % 101) * 0.9 + (900.0 if cold else 0)
        rows.append([
            f"{start:.6f}", arm, f"{latency:.4f}", 0 if failed else 1, 500 if failed else 200,
            f"{arm}-{ee + 1}", 100 + ee, 1 if cold else 0, 3.0 if cold else "", connect,
            f"{query:.3f}", spec.queries, sleep, f"{latency - 4.0 - (900.0 if cold else 0.0):.3f}",
            "local", "HTTPError(500)" if failed else "",
        ])  # fmt: skip
    return rows


def write_requests(run: Path, spec: RunSpec) -> None:
    """requests/local-1.csv: every arm's records in one file, as one Locust process writes."""
    rows = [row for arm, p in spec.arms.items() for row in request_rows(spec, arm, p)]
    rows.sort(key=lambda row: float(str(row[0])))
    (run / "requests").mkdir()
    _write_csv(run / "requests" / "local-1.csv", REQUEST_COLUMNS, rows)


def write_samples(run: Path, spec: RunSpec) -> None:
    """samples.jsonl: one line per second, as the local recorder (or the aws probe) writes."""
    lines = []
    for second in range(spec.seconds):
        moment = spec.start + timedelta(seconds=second + 1)
        arms: dict[str, object] = {}
        total = 0
        for arm, profile in spec.arms.items():
            entry = arm_sample(spec, profile, second)
            if spec.target == "aws":
                entry = {"DatabaseConnections": entry["DatabaseConnections"]}
            arms[arm] = entry
            db = entry["DatabaseConnections"]
            assert isinstance(db, int)
            total += db
        sample: dict[str, object] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "epoch": moment.timestamp(),
            "arms": arms,
            "database": {"connections_total": total + 2},
        }
        if spec.with_host:
            busy = 95.0 if second < 20 else 40.0
            sample["host"] = {
                "cores": 2,
                "cpu_percent": busy,
                "stack_cpu_percent": busy - 20,
                "load_cpu_percent": 10.0,
            }
        lines.append(json.dumps(sample))
    (run / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def outputs_for(spec: RunSpec) -> dict[str, dict[str, str]]:
    """An outputs file of the `cdk deploy --outputs-file` shape."""
    stack = {
        "ApiUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
        "Arms": ",".join(spec.arms),
        "MetricsSource": "cloudwatch" if spec.target == "aws" else "local",
        "CapacityProviderName": "poolbench-cp",
        "DbClusterIdentifier": "poolbench-db",
        "ApiName": "poolbench",
        "ApiStage": "prod",
        "Region": "eu-west-1",
    }
    for arm in spec.arms:
        stack[f"{arm.capitalize()}FunctionName"] = f"PoolbenchStack-{arm.capitalize()}Fn"
    return {"PoolbenchStack": stack}


def write_manifest(run: Path, spec: RunSpec) -> None:
    """manifest.json as docs/contracts.md shows it."""
    end = spec.start + timedelta(seconds=spec.seconds)
    stamp = "%Y-%m-%dT%H:%M:%S.000Z"
    manifest = {
        "poolbench_version": "0.1.0",
        "run_id": run.name,
        "status": spec.status,
        "target": spec.target,
        "command": "poolbench run --preset seed",
        "started_at": (spec.start - timedelta(seconds=5)).strftime(stamp),
        "ended_at": (end + timedelta(seconds=5)).strftime(stamp),
        "load_started_at": spec.start.strftime(stamp),
        "load_ended_at": end.strftime(stamp),
        "scenario": {
            "preset": "seed",
            "arms": list(spec.arms),
            "users": spec.users,
            "requests_per_arm": 1000,
            "duration_s": None,
            "spawn_rate": 100,
            "sleep_ms": 5000,
            "queries": spec.queries,
            "hold": True,
            "schedule": "parallel",
            "processes": 1,
        },
        "stack": {"arms": {a: {} for a in spec.arms}, "pooler": {"default_pool_size": 20}},
        "versions": {
            "python": "3.11.7",
            "locust": "2.47.0",
            "postgresql": "15.18",
            "pgbouncer": "1.18.0",
            "poolbench": "0.1.0",
        },
        "git_commit": "abc123",
        "host": {"cores": 2, "memory_gib": 23.5, "platform": "Linux"},
        "error": None,
    }
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def make_run_folder(
    root: Path, spec: RunSpec | None = None, name: str = "2026-11-22T10-00-00Z"
) -> Path:
    """A complete run folder under `root`, as `poolbench run` leaves it (before collect)."""
    spec = spec or RunSpec()
    run = root / name
    run.mkdir(parents=True)
    write_manifest(run, spec)
    (run / "outputs.json").write_text(json.dumps(outputs_for(spec)), encoding="utf-8")
    write_locust(run, spec)
    write_samples(run, spec)
    if spec.with_requests:
        write_requests(run, spec)
    return run
