"""Memory of one warm managed-arm worker: the figure behind infra.settings.WORKER_MEMORY_MIB.

Python on Lambda Managed Instances runs one process per concurrent request slot and runs init in
each, so what one worker holds after its imports and a request is what every slot costs. This
starts a real PostgreSQL (local/postgres.py), then a fresh interpreter that imports what a worker
imports (awslambdaric's bootstrap, boto3, the handler), creates the Secrets Manager client the
handler would, serves two seed-shaped requests (connect, 2 x select, close; no sleep) and prints
its RSS, PSS and USS from /proc/self/smaps_rollup.

    uv run python scripts/worker_memory.py                       # this venv's Python
    uv run python scripts/worker_memory.py --python /path/to/python3.13   # the runtime's version

The interpreter given needs psycopg[binary], boto3 and awslambdaric installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from local.postgres import PostgresServer, PostgresSettings

REPO = Path(__file__).resolve().parent.parent

WORKER = """
import json, sys
import awslambdaric.bootstrap  # noqa: F401  (what a worker has loaded besides the handler)
import boto3
from functions.app import handler as h

def mem():
    out = {"rss_mib": 0.0, "pss_mib": 0.0, "uss_mib": 0.0}
    for line in open("/proc/self/smaps_rollup"):
        key, value = line.split(":", 1)
        kib = int(value.split()[0])
        if key == "Rss": out["rss_mib"] = kib / 1024
        if key == "Pss": out["pss_mib"] = kib / 1024
        if key in ("Private_Clean", "Private_Dirty"): out["uss_mib"] += kib / 1024
    return {k: round(v, 1) for k, v in out.items()}

after_import = mem()
boto3.client("secretsmanager", region_name="eu-west-1")
class Context: aws_request_id = "measure"
for _ in range(2):
    r = h.handler({"queryStringParameters": {"sleep_ms": "0", "queries": "2"}}, Context())
    assert r["statusCode"] == 200, r
print(json.dumps({"python": sys.version.split()[0], "after_import": after_import,
                  "after_two_requests": mem()}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter of the worker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = PostgresServer(PostgresSettings(data_dir=Path(tmp) / "data"), tag="worker-memory")
        server.start()
        try:
            role = server.create_roles(["managed"])["managed"]
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                "ARM": "managed",
                "CONNECT_DIRECT": "1",
                "DB_HOST": "127.0.0.1",
                "DB_PORT": str(server.port),
                "DB_NAME": server.settings.dbname,
                "DB_USER": role.name,
                "DB_PASSWORD": role.password,
            }
            result = subprocess.run(
                [args.python, "-c", WORKER], env=env, capture_output=True, text=True, check=False
            )
        finally:
            server.stop()
    if result.returncode != 0:
        print(f"worker_memory: the worker failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    print(json.dumps(json.loads(result.stdout), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
