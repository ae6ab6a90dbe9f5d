"""The local stand-in for CloudWatch, at 1 s: gauges from the function models, connections
from PostgreSQL itself (pg_stat_activity by each arm's role), each pooler's SHOW POOLS, and
the host's CPU use (local/cpu.py).

Each sample is appended to samples.jsonl (docs/contracts.md) and kept as `latest` for the
gateway's /_poolbench/metrics endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from functions import contract
from local.cpu import CpuSampler
from local.function_models import FunctionModel
from local.postgres import PostgresServer, Role, count_connections_by_role

logger = logging.getLogger(__name__)

POOL_FIELDS = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_login", "maxwait")


@dataclass(frozen=True)
class PoolerEndpoint:
    """A PgBouncer whose admin console we read: an EE's own (host: its socket folder), or the
    proxy arm's shared one (host: 127.0.0.1, as RDS Proxy is a network service)."""

    key: str
    host: str
    port: int
    role: Role


class PoolReader:
    """Keeps one admin-console connection per pooler (a login per second would cost more than
    the reading); runs in a worker thread, never on the event loop."""

    def __init__(self, dbname: str) -> None:
        self.dbname = dbname
        self._conns: dict[tuple[str, int], psycopg.Connection[tuple[Any, ...]]] = {}

    def _show(self, endpoint: PoolerEndpoint, command: str) -> dict[str, Any] | None:
        """The row for our database of an admin-console SHOW command, over the kept
        connection (opened on first use, dropped on error); None if the pooler did not answer."""
        key = (endpoint.key, endpoint.port)
        try:
            conn = self._conns.get(key)
            if conn is None or conn.closed:
                conn = psycopg.connect(
                    host=endpoint.host,
                    port=endpoint.port,
                    dbname="pgbouncer",
                    user=endpoint.role.name,
                    password=endpoint.role.password,
                    autocommit=True,
                    connect_timeout=2,
                    # The admin console speaks the simple query protocol only.
                    cursor_factory=psycopg.ClientCursor,
                )
                self._conns[key] = conn
            with conn.cursor() as cur:
                cur.execute(command)
                columns = [c.name for c in cur.description or []]
                for row in cur.fetchall():
                    values = dict(zip(columns, row, strict=True))
                    if values.get("database") == self.dbname:
                        return values
            return {}
        except psycopg.Error:
            self._drop(key)
            return None

    def read(self, endpoint: PoolerEndpoint) -> dict[str, int] | None:
        values = self._show(endpoint, "SHOW POOLS")
        return None if values is None else {k: int(values.get(k) or 0) for k in POOL_FIELDS}

    def query_totals(self, endpoint: PoolerEndpoint) -> tuple[int, int]:
        """(queries, microseconds) this pooler ran on the server for our database: PgBouncer
        times every query it forwards, so the Little's-law floor uses a measured figure."""
        values = self._show(endpoint, "SHOW STATS") or {}
        return int(values.get("total_query_count") or 0), int(values.get("total_query_time") or 0)

    def forget_all_but(self, keys: set[tuple[str, int]]) -> None:
        for key in [k for k in self._conns if k not in keys]:
            self._drop(key)

    def _drop(self, key: tuple[str, int]) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        for key in list(self._conns):
            self._drop(key)


class MetricsRecorder:
    def __init__(
        self,
        models: Mapping[str, FunctionModel],
        database: PostgresServer,
        roles: Mapping[str, Role],
        out_file: Path,
        *,
        interval_s: float = 1.0,
        shared_poolers: Mapping[str, PoolerEndpoint] | None = None,
        cpu: CpuSampler | None = None,
    ) -> None:
        self.models = models
        self.database = database
        self.roles = roles
        self.out_file = out_file
        self.interval_s = interval_s
        self.shared_poolers = dict(shared_poolers or {})
        self.cpu = cpu
        self.latest: dict[str, Any] = {}
        self.peaks: dict[str, dict[str, int]] = {}
        self._pools = PoolReader(database.settings.dbname)
        self._admin: psycopg.Connection[tuple[Any, ...]] | None = None
        # Reads run in worker threads and may overlap (the loop's sample, an extra one asked
        # for at the end of a run, a cancelled one still finishing): one at a time, and none
        # after close, so no connection is ever opened that close() cannot see.
        self._db_lock = threading.Lock()
        self._closed = False
        self._sampled = asyncio.Condition()

    async def run(self) -> None:
        """Samples on whole seconds until cancelled; a failed sample is logged, not fatal."""
        try:
            while True:
                now = time.time()
                await asyncio.sleep(self.interval_s - now % self.interval_s)
                try:
                    await self.sample_once()
                except (psycopg.Error, OSError) as exc:
                    logger.warning("metrics sample failed: %s", exc)
                async with self._sampled:
                    self._sampled.notify_all()
        finally:
            await asyncio.to_thread(self.close)

    async def next_sample(self) -> dict[str, Any]:
        """Waits for the next regular sample, so a caller can be sure the last second it cares
        about is on file, without writing a second sample for the same second."""
        async with self._sampled:
            await self._sampled.wait()
        return self.latest

    async def sample_once(self) -> dict[str, Any]:
        epoch = time.time()
        arms = {arm: model.sample() for arm, model in self.models.items()}
        endpoints = self._pool_endpoints()
        host = await asyncio.to_thread(self.cpu.sample) if self.cpu is not None else None
        by_role, total, pools = await asyncio.to_thread(self._read_database, endpoints)
        for arm, sample in arms.items():
            sample[contract.DATABASE_CONNECTIONS] = by_role.get(self.roles[arm].name, 0)
            for endpoint in endpoints.get(arm, []):
                pool = pools.get((endpoint.key, endpoint.port))
                if pool is not None:
                    sample["ees"].setdefault(endpoint.key, {})["pool"] = pool
            peaks = self.peaks.setdefault(arm, {})
            for name, value in sample.items():
                if isinstance(value, int):
                    peaks[name] = max(peaks.get(name, 0), value)
        record = {
            "time": datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "epoch": round(epoch, 3),
            "arms": arms,
            "database": {"connections_total": total},
        }
        if host is not None:  # host CPU over the last second (local/cpu.py)
            record["host"] = host
        with self.out_file.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        self.latest = record
        return record

    async def query_time_ms(self) -> float | None:
        """Mean server time per query over every live pooler of every arm, or None."""
        endpoints = [e for group in self._pool_endpoints().values() for e in group]

        def read() -> float | None:
            with self._db_lock:
                totals = [self._pools.query_totals(e) for e in endpoints]
            count = sum(c for c, _ in totals)
            return sum(t for _, t in totals) / count / 1000 if count else None

        return await asyncio.to_thread(read)

    def _pool_endpoints(self) -> dict[str, list[PoolerEndpoint]]:
        endpoints: dict[str, list[PoolerEndpoint]] = {}
        for arm, model in self.models.items():
            found = [
                PoolerEndpoint(
                    ee.ee_id, str(ee.settings.pooler_dir), ee.settings.pooler_port, self.roles[arm]
                )
                for ee in model.ready_ees()
                if ee.settings.layer_dir is not None
            ]
            if arm in self.shared_poolers:
                found.append(self.shared_poolers[arm])
            endpoints[arm] = found
        return endpoints

    def _read_database(
        self, endpoints: Mapping[str, list[PoolerEndpoint]]
    ) -> tuple[dict[str, int], int, dict[tuple[str, int], dict[str, int]]]:
        with self._db_lock:
            if self._closed:
                raise OSError("the metrics recorder is closed")
            return self._read_database_locked(endpoints)

    def _read_database_locked(
        self, endpoints: Mapping[str, list[PoolerEndpoint]]
    ) -> tuple[dict[str, int], int, dict[tuple[str, int], dict[str, int]]]:
        if self._admin is None or self._admin.closed:
            self._admin = self.database.admin_connect()
        by_role = count_connections_by_role(self._admin)
        pools: dict[tuple[str, int], dict[str, int]] = {}
        for endpoint in (e for group in endpoints.values() for e in group):
            pool = self._pools.read(endpoint)
            if pool is not None:
                pools[(endpoint.key, endpoint.port)] = pool
        self._pools.forget_all_but(set(pools))
        return by_role, sum(by_role.values()), pools

    def close(self) -> None:
        with self._db_lock:
            self._closed = True
            self._pools.close()
            if self._admin is not None:
                with contextlib.suppress(psycopg.Error):
                    self._admin.close()
