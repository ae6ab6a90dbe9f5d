"""`poolbench sweep --target aws` rehearsed as in tests/run/test_run_aws.py: the local stack's
gateway plays the deployed API, moto's server mode plays CloudWatch, STS and Lambda (the
probe). Each point is an AWS run; the points are priced with the stack's Region."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from local.stack import StackRunner
from poolbench.cli import main
from tests.run.test_run_aws import (  # noqa: F401  (fixtures)
    STACK_REGION,
    aws,
    cdk_outputs,
    deployed,
    moto_server,
    queue_probe_samples,
    seed_cloudwatch,
    write,
)

pytestmark = [pytest.mark.local, pytest.mark.slow]  # `poolbench run` end to end, or a long bench


def test_aws_sweep_runs_each_point_against_the_stack(
    aws: str,  # noqa: F811
    deployed: StackRunner,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed_cloudwatch(datetime.now(UTC))
    queue_probe_samples(aws, 400)
    outputs = write(
        tmp_path / "cdk-outputs.json", {"PoolbenchStack": cdk_outputs(deployed.stack.api_url)}
    )
    argv = ["sweep", "--target", "aws", "--outputs-file", str(outputs), "--users", "2,3"]
    argv += ["--preset", "smoke", "--requests", "6", "--sleep-ms", "50", "--no-wait"]

    code = main([*argv, "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 0, err
    assert "points shorter than 300 s" in err  # the 5-minute period, said before the load
    (sweep_dir,) = (tmp_path / "out").iterdir()
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert (sweep["target"], sweep["status"]) == ("aws", "completed")
    with (sweep_dir / "sweep.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["users"], r["arm"], r["requests"]) for r in rows] == [
        ("2", "standard", "6"),
        ("2", "managed", "6"),
        ("3", "standard", "6"),
        ("3", "managed", "6"),
    ]
    # slots per EE as deployed (the outputs), pool size unknown on AWS
    assert {r["slots_per_ee"] for r in rows} == {"16"}
    assert {r["pool_size"] for r in rows} == {""}
    for point in sweep["points"]:
        summary = json.loads((sweep_dir / point["run_dir"] / "summary.json").read_text())
        managed = next(a for a in summary["arms"] if a["arm"] == "managed")
        # eu-west-1's m8g.large, not us-east-1's; and no "local run" label
        assert any("$0.0984/h" in a for a in managed["cost"]["assumptions"]), STACK_REGION
        assert not any("local run" in a for a in managed["cost"]["assumptions"])
