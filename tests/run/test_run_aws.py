"""`poolbench run --target aws` rehearsed as a new user's first run after `cdk deploy`.

What stands in for AWS: the local stack's gateway plays the deployed API (real HTTP, real
functions, under the same `/prod/` stage path as API Gateway); moto's server mode plays
CloudWatch, STS and Lambda (the probe's invoke: moto's docker-less Lambda answers with the
samples queued through its /moto-api). Everything between (the checks before the load, Locust,
the probe sampler, collect, report) is the code that runs against AWS.

The shell is on us-east-1 and the stack in eu-west-1, as in the run that first went wrong:
CloudWatch holds different figures in each, so a client in the wrong Region reads wrong peaks.
"""

from __future__ import annotations

import csv
import json
import math
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from functions import contract
from local.ports import claim_for_process
from local.settings import StackSettings
from local.stack import StackRunner, running_stack
from poolbench.cli import main

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef

pytestmark = [pytest.mark.local, pytest.mark.slow]  # `poolbench run` end to end, or a long bench

STACK_REGION = "eu-west-1"
SHELL_REGION = "us-east-1"
FUNCTIONS = {"standard": "PoolbenchStack-Standard", "managed": "PoolbenchStack-Managed"}
PROBE_DB = {"standard": 4, "managed": 2}  # what the probe's queued samples say


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    port = claim_for_process()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _post(f"{endpoint}/moto-api/config", {"lambda": {"use_docker": False}})
    try:
        yield endpoint
    finally:
        _post(f"{endpoint}/moto-api/config", {"lambda": {"use_docker": True}})
        server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto emptied, and a shell whose Region is not the stack's."""
    _post(f"{moto_server}/moto-api/reset", {})
    for key, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": SHELL_REGION,
        "AWS_DEFAULT_REGION": SHELL_REGION,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackRunner]:
    with running_stack(StackSettings(run_dir=tmp_path_factory.mktemp("stack"))) as runner:
        yield runner


def cdk_outputs(api_url: str, **changes: str | None) -> dict[str, str]:
    """Exactly the keys `cdk deploy --outputs-file` writes for a standard+managed stack."""
    outputs: dict[str, str | None] = {
        "ApiUrl": api_url,
        "Arms": "standard,managed",
        "MetricsSource": "cloudwatch",
        "StandardFunctionName": FUNCTIONS["standard"],
        "ManagedFunctionName": FUNCTIONS["managed"],
        "CapacityProviderName": "PoolbenchStack-Capacity",
        "ManagedPerEnvironmentMaxConcurrency": "16",
        "ManagedMinExecutionEnvironments": "3",
        "ManagedMaxExecutionEnvironments": "6",
        "FunctionTimeoutSeconds": "29",
        "DbClusterIdentifier": "poolbench-cluster",
        "ApiName": "poolbench",
        "ApiStage": "prod",
        "ProbeFunctionName": "PoolbenchStack-Probe",
        "Region": STACK_REGION,
    }
    outputs.update(changes)
    return {k: v for k, v in outputs.items() if v is not None}


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def run_aws(outputs: Path, out: Path, *extra: str, wait: bool = False) -> int:
    argv = ["run", "--target", "aws", "--outputs-file", str(outputs), "--preset", "smoke"]
    argv += ["--requests", "10", "--sleep-ms", "50", "--probe-interval", "0.5"]
    argv += ["--wait"] if wait else ["--no-wait"]
    return main([*argv, "--out", str(out), *extra])


def seed_cloudwatch(now: datetime) -> dict[int, float]:
    """ConcurrentExecutions and Invocations per minute around now, in both Regions: the
    stack's Region holds 11, 12, ... per minute, the shell's 900+ (a wrong client's peak)."""
    minute0 = now.replace(second=0, microsecond=0) - timedelta(minutes=2)
    by_minute: dict[int, float] = {}
    for region, base in ((STACK_REGION, 10.0), (SHELL_REGION, 900.0)):
        client = boto3.client("cloudwatch", region_name=region)
        for i in range(7):
            stamp = minute0 + timedelta(minutes=i)
            value = base + i + 1
            if region == STACK_REGION:
                by_minute[int(stamp.timestamp())] = value
            client.put_metric_data(
                Namespace="AWS/Lambda",
                MetricData=[
                    {
                        "MetricName": metric,
                        "Dimensions": [{"Name": "FunctionName", "Value": fn}],
                        "Timestamp": stamp + timedelta(seconds=1),
                        "Value": value,
                    }
                    for fn in FUNCTIONS.values()
                    for metric in ("ConcurrentExecutions", "Invocations")
                ],
            )
    return by_minute


MANAGED_EE = {"ExecutionEnvironmentConcurrency": 11.0, "ExecutionEnvironmentConcurrencyLimit": 16.0}
MANAGED_THROTTLES = {"Throttles": 6.0, "ConcurrencyThrottles": 30.0}  # per period each


def seed_managed_metrics(now: datetime) -> None:
    """What Managed Instances publish for the managed function, in the stack's Region: its
    EEs' concurrency against their limit and the throttle reason, per 5-minute period (the
    dimensions FACTS.md gives), and Throttles per minute by function name."""
    client = boto3.client("cloudwatch", region_name=STACK_REGION)
    fn = FUNCTIONS["managed"]
    lmi_dims: list[DimensionTypeDef] = [
        {"Name": "CapacityProviderName", "Value": "PoolbenchStack-Capacity"},
        {"Name": "FunctionName", "Value": fn},
        {"Name": "Resource", "Value": f"{fn}:$LATEST.PUBLISHED"},
    ]
    period0 = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    for i in (-1, 0, 1):
        stamp = period0 + timedelta(minutes=5 * i, seconds=1)
        client.put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[
                {"MetricName": name, "Dimensions": lmi_dims, "Timestamp": stamp, "Value": value}
                for name, value in (
                    *MANAGED_EE.items(),
                    ("ConcurrencyThrottles", MANAGED_THROTTLES["ConcurrencyThrottles"]),
                )
            ],
        )
    minute0 = now.replace(second=0, microsecond=0) - timedelta(minutes=2)
    client.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Throttles",
                "Dimensions": [{"Name": "FunctionName", "Value": fn}],
                "Timestamp": minute0 + timedelta(minutes=i, seconds=1),
                "Value": MANAGED_THROTTLES["Throttles"],
            }
            for i in range(7)
        ],
    )


def queue_probe_samples(endpoint: str, count: int) -> None:
    """The probe's answers: one samples.jsonl line each, as functions/probe returns it."""
    results = []
    for i in range(count):
        epoch = time.time() + i
        sample = {
            "time": datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "epoch": epoch,
            "arms": {arm: {"DatabaseConnections": n} for arm, n in PROBE_DB.items()},
            "database": {"connections_total": sum(PROBE_DB.values()), "by_role": {}},
        }
        results.append(json.dumps(sample))
    _post(
        f"{endpoint}/moto-api/static/lambda-simple/response",
        {"results": results, "region": STACK_REGION, "account_id": "123456789012"},
    )


def only_run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_good_run_in_another_region_with_two_stacks_reads_the_stacks_figures(
    aws: str, deployed: StackRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a two-stack outputs file (the other stack is broken), the run picks one with
    # --stack; CloudWatch and the probe hold figures in the stack's Region
    by_minute = seed_cloudwatch(datetime.now(UTC))
    seed_managed_metrics(datetime.now(UTC))
    queue_probe_samples(aws, 200)
    outputs = write(
        tmp_path / "cdk-outputs.json",
        {
            "OtherStack": {"ApiUrl": "https://nowhere.invalid/prod/", "Arms": "standard"},
            "PoolbenchStack": cdk_outputs(deployed.stack.api_url),
        },
    )
    assert deployed.stack.api_url.endswith("/prod/")  # one URL shape on both targets

    code = run_aws(outputs, tmp_path / "out", "--stack", "PoolbenchStack")

    err = capsys.readouterr().err
    assert code == 0, err
    assert (
        f"note: the shell's AWS region is {SHELL_REGION}; using the stack's region "
        f"{STACK_REGION}" in err
    )
    assert "AWS account 123456789012" in err
    run_dir = only_run_dir(tmp_path / "out")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["target"], manifest["status"]) == ("aws", "completed")
    # --stack reached the run folder and Locust
    assert json.loads((run_dir / "outputs.json").read_text()) == {
        "PoolbenchStack": cdk_outputs(deployed.stack.api_url)
    }
    assert "--stack PoolbenchStack" in (run_dir / "locust_command.txt").read_text()
    with (run_dir / "locust_stats.csv").open(newline="") as fh:
        counts = {r["Name"]: int(r["Request Count"]) for r in csv.DictReader(fh)}
    assert (counts["standard"], counts["managed"]) == (10, 10)
    # The probe: counted, at the interval asked for
    probe = manifest["probe"]
    assert probe["interval_s"] == 0.5
    assert probe["samples"] >= 2 and probe["failures"] == 0
    # Peaks: the stack Region's per-minute values over the load's minutes, never the shell's
    start = datetime.fromisoformat(manifest["load_started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(manifest["load_ended_at"].replace("Z", "+00:00"))
    first = math.floor(start.timestamp() / 60) * 60
    last = math.ceil(end.timestamp() / 60) * 60
    want = max(v for t, v in by_minute.items() if first <= t < last)
    summary = json.loads((run_dir / "summary.json").read_text())
    arms = {a["arm"]: a for a in summary["arms"]}
    for arm in ("standard", "managed"):
        assert arms[arm]["peak_concurrency"] == want
        assert arms[arm]["peak_db_connections"] == PROBE_DB[arm]
        assert arms[arm]["db_connections_per_concurrent_request"] == pytest.approx(
            PROBE_DB[arm] / want
        )
    # EEs from the responses: the managed arm's 4 users share its 3 ready EEs; the standard
    # arm's 4 users had one EE each
    assert arms["managed"]["peak_execution_environments_serving"] in (1, 2, 3)
    assert arms["standard"]["peak_execution_environments_serving"] == 4
    assert summary["probe"]["samples"] == probe["samples"]
    # Asked for and not in CloudWatch: missing, never 0
    assert "standard Throttles Sum" in summary["missing_metrics"]
    assert arms["standard"]["throttles"] is None
    assert summary["verdict"].startswith("Managed Instances used")
    # Managed Instances' own metrics: the fullest EE against its limit, and the throttles
    # with their reason, per second over CloudWatch's periods (60 s and 300 s)
    managed = arms["managed"]
    assert managed["peak_ee_concurrency"] == MANAGED_EE["ExecutionEnvironmentConcurrency"]
    assert managed["ee_concurrency_limit"] == MANAGED_EE["ExecutionEnvironmentConcurrencyLimit"]
    assert managed["throttle_reasons"]["ConcurrencyThrottles"] >= 30
    assert managed["peak_throttles_per_s"] == pytest.approx(MANAGED_THROTTLES["Throttles"] / 60)
    page = (run_dir / "report.html").read_text()
    ee_section = page.split('id="ee-concurrency"', 1)[1].split("</section>", 1)[0]
    assert "<td>16</td>" in ee_section and "<td>11</td>" in ee_section and "69%" in ee_section
    assert 'id="chart-ee_concurrency"' in page and 'id="chart-throttles"' in page


def test_unreachable_api_fails_the_run_and_says_why(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{claim_for_process()}/prod/"
    outputs = write(tmp_path / "o.json", {"PoolbenchStack": cdk_outputs(closed)})

    started = time.monotonic()
    code = run_aws(outputs, tmp_path / "out", wait=True)

    printed = capsys.readouterr()
    assert code == 1, printed.err
    # No request succeeded: CloudWatch will publish nothing to wait for, so it does not wait
    assert "waiting for CloudWatch" not in printed.err
    assert time.monotonic() - started < 45
    run_dir = only_run_dir(tmp_path / "out")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "arm standard: no successful request of 10" in manifest["error"]
    assert "ConnectionRefused" in manifest["error"]
    # The CLI says it above the table; no verdict for arms without a success
    out = printed.out
    assert "p50" in out, printed.err[-3000:]
    assert out.index("run failed: arm standard: no successful request") < out.index("p50")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "No arm had a successful request, so none can be compared."


def test_no_credentials_is_one_line_and_exit_2_before_any_request(
    aws: str, deployed: StackRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    outputs = write(tmp_path / "o.json", {"PoolbenchStack": cdk_outputs(deployed.stack.api_url)})
    before = deployed.stack.models["standard"].init_summary()["count"]

    started = time.monotonic()
    code = run_aws(outputs, tmp_path / "out")

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("poolbench: error: AWS credentials check (STS GetCallerIdentity)")
    assert "no AWS credentials found: configure AWS credentials" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "out").exists()  # no run folder: nothing was started
    assert deployed.stack.models["standard"].init_summary()["count"] == before  # no request
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("document", "extra", "message"),
    [
        pytest.param(
            {"PoolbenchStack": cdk_outputs("https://x/prod/", StandardFunctionName=None)},
            (),
            "stack 'PoolbenchStack' lacks StandardFunctionName, which the run reads (the file "
            "is partial or from another stack)",
            id="partial-outputs",
        ),
        pytest.param(
            {"PoolbenchStack": cdk_outputs("https://x/prod/", FunctionTimeoutSeconds=None)},
            (),
            "lacks FunctionTimeoutSeconds, which the run reads (the stack predates these outputs)",
            id="older-stack",
        ),
        pytest.param(
            {
                "PoolbenchLocal": {
                    "ApiUrl": "http://127.0.0.1:1/prod/",
                    "Arms": "standard",
                    "MetricsSource": "local",
                    "Region": "local",
                    "StandardFunctionName": "poolbench-local-standard",
                }
            },
            (),
            "was written by `poolbench local up` (MetricsSource=local)",
            id="local-outputs",
        ),
        pytest.param(
            {"PoolbenchStack": cdk_outputs("https://x/prod/")},
            ("--min-ees", "5"),
            "--min-ees sets the local stack and does nothing on --target aws: deploy with "
            "-c minExecutionEnvironments=N",
            id="local-only-knob",
        ),
        pytest.param(
            {"PoolbenchStack": cdk_outputs("https://x/prod/")},
            ("--users", "100"),
            "the managed arm starts with 3 EEs x 16 requests = 48 slots for 100 users arriving "
            "at once, so Lambda would throttle: redeploy with -c minExecutionEnvironments=7 "
            "-c maxExecutionEnvironments=7 (or -c perEnvironmentMaxConcurrency=34",
            id="managed-capacity",
        ),
        pytest.param(
            {"PoolbenchStack": cdk_outputs("https://x/prod/")},
            ("--sleep-ms", "28500"),
            "--sleep-ms 28500 exceeds stack PoolbenchStack's function timeout of 29 s minus a "
            "1000 ms margin (28000 ms)",
            id="sleep-over-timeout",
        ),
        pytest.param(
            {"A": cdk_outputs("https://x/prod/"), "B": cdk_outputs("https://y/prod/")},
            (),
            "several stacks (A, B); name one with --stack",
            id="two-stacks-without-stack",
        ),
    ],
)
def test_bad_outputs_and_options_are_refused_before_the_load(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    document: dict[str, Any], extra: tuple[str, ...], message: str,
) -> None:  # fmt: skip
    outputs = write(tmp_path / "o.json", document)

    code = run_aws(outputs, tmp_path / "out", *extra)

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("poolbench: error: ")
    assert message in err[0]
    assert not (tmp_path / "out").exists()


def test_allow_throttles_lets_an_underprovisioned_run_through_the_checks(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The capacity check is skipped; the run then stops at the next check (credentials here
    # are fine), so the unreachable API fails it with exit 1, not 2
    closed = f"http://127.0.0.1:{claim_for_process()}/prod/"
    outputs = write(tmp_path / "o.json", {"PoolbenchStack": cdk_outputs(closed)})
    code = run_aws(outputs, tmp_path / "out", "--users", "100", "--allow-throttles")
    assert code == 1, capsys.readouterr().err


def test_ctrl_c_in_the_cloudwatch_wait_says_how_to_collect_later(
    aws: str, deployed: StackRunner, tmp_path: Path
) -> None:
    # Given a real `poolbench run --target aws` (a subprocess, environment as in the
    # fixture), waiting for CloudWatch after its load
    from tests.interrupt import interrupt_poolbench

    outputs = write(tmp_path / "o.json", {"PoolbenchStack": cdk_outputs(deployed.stack.api_url)})
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    args = ["run", "--target", "aws", "--outputs-file", str(outputs), "--preset", "smoke"]
    args += ["--requests", "4", "--sleep-ms", "10", "--out", str(out)]

    def waiting() -> bool:
        return log.exists() and "waiting for CloudWatch: up to" in log.read_text()

    result = interrupt_poolbench(args, log, ready=waiting)

    # Then it stated the bound and why, and on Ctrl-C how to finish the job later
    assert result.returncode == 130, result.log[-2000:]
    run_dir = only_run_dir(out)
    text = " ".join(result.log.split())
    assert "stops as soon as every series has its last period" in text
    assert (
        f"interrupted before the report: collect later with `poolbench collect {run_dir} "
        f"--target aws` then `poolbench report {run_dir}`" in text
    )
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    assert result.left_after == []


def test_an_aws_run_of_the_arms_without_a_pooler_reads_their_own_outputs(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack of the two no-pooler arms (their CloudFormation output keys CamelCase:
    # ManagedDirectFunctionName), CloudWatch in the stack's Region and the probe's samples
    arms = ("direct", "managed-direct")
    functions = {a: f"PoolbenchStack-{contract.arm(a).title}" for a in arms}
    probe_db = {"direct": 4, "managed-direct": 4}
    client = boto3.client("cloudwatch", region_name=STACK_REGION)
    minute0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    client.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "ConcurrentExecutions",
                "Dimensions": [{"Name": "FunctionName", "Value": fn}],
                "Timestamp": minute0 + timedelta(minutes=i, seconds=1),
                "Value": 4.0,
            }
            for fn in functions.values()
            for i in range(6)
        ],
    )
    samples = []
    for i in range(200):
        epoch = time.time() + i
        samples.append(
            json.dumps(
                {
                    "time": datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "epoch": epoch,
                    "arms": {a: {"DatabaseConnections": n} for a, n in probe_db.items()},
                    "database": {"connections_total": 8, "by_role": {}},
                }
            )
        )
    _post(
        f"{aws}/moto-api/static/lambda-simple/response",
        {"results": samples, "region": STACK_REGION, "account_id": "123456789012"},
    )
    settings = StackSettings(run_dir=tmp_path / "stack", arms=arms)
    with running_stack(settings) as runner:
        outputs = cdk_outputs(
            runner.stack.api_url,
            Arms=",".join(arms),
            StandardFunctionName=None,
            ManagedFunctionName=None,
            **{contract.function_name_output(a): fn for a, fn in functions.items()},
        )
        file = write(tmp_path / "cdk-outputs.json", {"PoolbenchStack": outputs})

        code = run_aws(file, tmp_path / "out")

    # Then the run drives both arms, and the summary has their concurrency and connections
    assert code == 0, capsys.readouterr().err
    summary = json.loads((only_run_dir(tmp_path / "out") / "summary.json").read_text())
    by_arm = {a["arm"]: a for a in summary["arms"]}
    assert set(by_arm) == set(arms)
    for arm in arms:
        assert by_arm[arm]["requests"] == 10 and by_arm[arm]["failures"] == 0
        assert by_arm[arm]["peak_concurrency"] == 4.0
        assert by_arm[arm]["db_connections_per_concurrent_request"] == pytest.approx(1.0)
    assert "Managed Instances without a pooler used 1.00" in summary["verdict"]
