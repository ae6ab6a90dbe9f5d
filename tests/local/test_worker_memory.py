"""What one warm Python worker of a Managed Instances EE costs in memory, with and without boto3.

Python on Managed Instances runs one process per concurrency slot, so the per-EE concurrency
that fits an instance is its memory over a worker's. Measured in a real local managed EE
(awslambdaric's forked workers, the real handler, the real extension and PgBouncer), after
each worker has served one request, from /proc/<pid>/smaps_rollup:
- pooled: the handler as the in-EE arms run it (socket to PgBouncer, no password, no boto3);
- boto3: the handler reading its password from Secrets Manager (moto's server here) at init,
  as every worker did before the pooler trusted its socket and as the proxy arm still does.
Print the figures with `uv run --frozen pytest tests/local/test_worker_memory.py -s -q`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from local.execution_environment import EESettings, ExecutionEnvironment
from tests.local.conftest import Database, SecretsManager
from tests.local.ee_settings import ee_settings

pytestmark = [pytest.mark.local, pytest.mark.slow]  # `poolbench run` end to end, or a long bench

WORKERS = 4
MIB = 1024 * 1024


def memory_kib(pid: int) -> dict[str, int]:
    """Rss and Pss of one process, in KiB, as the kernel sums them over its mappings."""
    values = {}
    for line in (Path("/proc") / str(pid) / "smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    return {"rss": values["Rss"], "pss": values["Pss"]}


def measure(settings: EESettings) -> dict[str, Any]:
    """Median worker memory after every worker served one request; the pooler's too."""
    request = json.dumps({"queryStringParameters": {"sleep_ms": "500"}}).encode()

    async def scenario() -> dict[str, Any]:
        ee = ExecutionEnvironment(settings)
        await ee.start()
        try:
            # As many requests as workers, each holding its worker 0.5 s: one per worker.
            replies = await asyncio.gather(*(ee.invoke(request) for _ in range(WORKERS)))
            bodies = [json.loads(json.loads(r)["body"]) for r in replies]
            workers = {int(b["worker"]) for b in bodies}
            assert len(workers) == WORKERS, bodies
            per_worker = [memory_kib(pid) for pid in workers]
            extension = memory_kib(ee.extension_procs[0].pid)
            pgbouncer = memory_kib(int((settings.pooler_dir / "pgbouncer.pid").read_text()))
        finally:
            await ee.shutdown()
        return {
            "rss_mib": statistics.median(m["rss"] for m in per_worker) / 1024,
            "pss_mib": statistics.median(m["pss"] for m in per_worker) / 1024,
            "extension_rss_mib": extension["rss"] / 1024,
            "pgbouncer_rss_mib": pgbouncer["rss"] / 1024,
        }

    return asyncio.run(scenario())


def test_a_worker_that_skips_boto3_is_smaller(
    database: Database, secrets_manager: SecretsManager, tmp_path: Path
) -> None:
    role = database.fresh_role("managed")
    arn = secrets_manager.for_role(role)
    # Both EEs read the secret in the extension (boto3 there, as on AWS); only the second's
    # workers read it too, connecting with the password (CONNECT_DIRECT, straight to the DB).
    env = {k: v for k, v in database.function_env(role).items() if k != "DB_PASSWORD"}
    env.update(secrets_manager, DB_SECRET_ARN=arn)

    def ee(
        ee_id: str, extra: dict[str, str], preload: tuple[str, ...] = ("psycopg",)
    ) -> EESettings:
        return ee_settings(
            tmp_path, {**env, **extra}, ee_id, max_concurrency=WORKERS, preload=preload
        )

    pooled = measure(ee("pooled-1", {}))
    with_boto3 = measure(ee("boto3-1", {"CONNECT_DIRECT": "1"}))
    # Whether AWS's runtime imports anything before it forks is not documented: without the
    # local preload each worker imports psycopg itself, the upper bound.
    unshared = measure(ee("unshared-1", {}, preload=()))

    for name, m in (
        ("pooled (no boto3)", pooled),
        ("boto3 + secret read", with_boto3),
        ("pooled, no preload", unshared),
    ):
        print(
            f"\n{name:>20}: worker RSS {m['rss_mib']:.1f} MiB, PSS {m['pss_mib']:.1f} MiB;"
            f" extension RSS {m['extension_rss_mib']:.1f} MiB,"
            f" PgBouncer RSS {m['pgbouncer_rss_mib']:.1f} MiB"
        )
    # boto3 and botocore's loaded service model are private to each worker that imports them.
    assert with_boto3["pss_mib"] - pooled["pss_mib"] >= 10, (pooled, with_boto3)
    assert with_boto3["rss_mib"] - pooled["rss_mib"] >= 10, (pooled, with_boto3)
