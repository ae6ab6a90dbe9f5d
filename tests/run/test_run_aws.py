"""`poolbench run --target aws` end to end with what stands in for AWS here: the local stack's
gateway plays the deployed API (real HTTP, real functions), moto's server plays CloudWatch.
Everything between, outputs file, Locust, collect, report, is the code that runs against AWS."""

from __future__ import annotations

import csv
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from local.settings import StackSettings
from local.stack import StackRunner, running_stack
from poolbench.cli import main

pytestmark = pytest.mark.local


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[StackRunner]:
    with running_stack(StackSettings(run_dir=tmp_path / "stack")) as runner:
        yield runner


def test_aws_target_runs_load_collects_from_cloudwatch_and_reports(
    cloudwatch: str, deployed: StackRunner, tmp_path: Path
) -> None:
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "PoolbenchStack": {
                    "ApiUrl": deployed.stack.api_url,
                    "Arms": "standard,managed",
                    "MetricsSource": "cloudwatch",
                    "StandardFunctionName": "PoolbenchStack-Standard",
                    "ManagedFunctionName": "PoolbenchStack-Managed",
                    "CapacityProviderName": "PoolbenchStack-Capacity",
                    "DbClusterIdentifier": "poolbench-cluster",
                    "ApiName": "poolbench",
                    "ApiStage": "prod",
                    "Region": "eu-west-1",
                }
            }
        )
    )

    code = main(
        [
            "run",
            "--target",
            "aws",
            "--outputs-file",
            str(outputs),
            "--preset",
            "smoke",
            "--requests",
            "10",
            "--sleep-ms",
            "50",
            "--no-wait",
            "--out",
            str(tmp_path / "out"),
        ]
    )

    assert code == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["target"], manifest["status"]) == ("aws", "completed")
    assert json.loads((run_dir / "outputs.json").read_text()) == json.loads(outputs.read_text())
    with (run_dir / "locust_stats.csv").open(newline="") as fh:
        counts = {r["Name"]: int(r["Request Count"]) for r in csv.DictReader(fh)}
    assert (counts["standard"], counts["managed"]) == (10, 10)
    assert (run_dir / "metrics.csv").exists()  # CloudWatch had nothing: written, not invented
    summary = json.loads((run_dir / "summary.json").read_text())
    arms = {a["arm"]: a for a in summary["arms"]}
    assert arms["standard"]["requests"] == 10
    assert arms["managed"]["peak_db_connections"] is None  # missing stays missing, never 0
    assert (run_dir / "report.html").exists()
