"""`poolbench aws preflight` against botocore's Stubber (real clients, real request
validation against the service models; only the answers are canned, as no account exists)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from poolbench import preflight
from poolbench.cli import main
from poolbench.preflight import Check, Clients, PreflightSettings, check_docker, run_checks

REGION = "eu-west-1"
IDENTITY = {"Account": "111122223333", "Arn": "arn:aws:iam::111122223333:user/bench", "UserId": "U"}


def _client(service: str) -> Any:
    session = boto3.session.Session(
        region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    return session.client(service)  # type: ignore[call-overload]


@pytest.fixture
def stubbed() -> Iterator[tuple[Clients, dict[str, Stubber]]]:
    clients = Clients(
        sts=_client("sts"),
        lam=_client("lambda"),
        quotas=_client("service-quotas"),
        apigw=_client("apigateway"),
        rds=_client("rds"),
    )
    stubs = {
        name: Stubber(getattr(clients, name)) for name in ("sts", "lam", "quotas", "apigw", "rds")
    }
    with ExitStack() as stack:
        for stub in stubs.values():
            stack.enter_context(stub)
        yield clients, stubs


def answer_all(
    stubs: dict[str, Stubber],
    *,
    concurrency: int = 1000,
    vcpus: float = 64.0,
    role: str | None = "arn:aws:iam::111122223333:role/apigw-logs",
    versions: int = 1,
) -> None:
    stubs["sts"].add_response("get_caller_identity", IDENTITY)
    stubs["lam"].add_response("list_capacity_providers", {"CapacityProviders": []}, {"MaxItems": 1})
    stubs["lam"].add_response(
        "get_account_settings",
        {
            "AccountLimit": {
                "ConcurrentExecutions": concurrency,
                "UnreservedConcurrentExecutions": concurrency,
            }
        },
    )
    stubs["quotas"].add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": "L-1216C47A", "Value": vcpus}},
        {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"},
    )
    stubs["apigw"].add_response("get_account", {"cloudwatchRoleArn": role} if role else {})
    stubs["rds"].add_response(
        "describe_db_engine_versions",
        {"DBEngineVersions": [{"Engine": "aurora-postgresql", "EngineVersion": "17.7"}] * versions},
        {"Engine": "aurora-postgresql", "EngineVersion": "17.7"},
    )


def settings(**changes: Any) -> PreflightSettings:
    values: dict[str, Any] = {
        "region": REGION,
        "arms": ("standard", "managed", "proxy"),
        "users": 100,
        "max_vcpus": 16,
        "postgres_version": "17.7",
    }
    values.update(changes)
    return PreflightSettings(**values)


def docker_ok() -> Check:
    return Check("Docker with arm64 (layer build)", "ok", "native")


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_ready_account_passes_every_check(stubbed: tuple[Clients, dict[str, Stubber]]) -> None:
    clients, stubs = stubbed
    answer_all(stubs)
    checks = run_checks(settings(), clients, docker_ok)
    assert [c.status for c in checks] == ["ok"] * 7, checks
    found = by_name(checks)
    assert "account 111122223333" in found["credentials (STS)"].detail
    assert "1000 (unreserved 1000) for 200 = 100 users x ['standard', 'proxy']" in (
        found["Lambda concurrency quota"].detail
    )
    assert "RDS Proxy supports" in found["Aurora PostgreSQL 17.7"].detail
    for stub in stubs.values():
        stub.assert_no_pending_responses()


def test_each_shortfall_is_a_cross_with_its_fix(
    stubbed: tuple[Clients, dict[str, Stubber]],
) -> None:
    # A new account: concurrency 10, 8 vCPUs, no API Gateway logging role, no 17.7 here
    clients, stubs = stubbed
    # (and a deploy that leaves the role alone: -c apiGatewayCloudWatchRole=false)
    answer_all(stubs, concurrency=10, vcpus=8.0, role=None, versions=0)
    found = by_name(run_checks(settings(stack_sets_apigw_role=False), clients, docker_ok))
    concurrency = found["Lambda concurrency quota"]
    assert (concurrency.mark, concurrency.status) == ("✗", "fail")
    assert "'Concurrent executions' >= 200" in concurrency.fix
    vcpus = found["EC2 On-Demand vCPU quota"]
    assert vcpus.status == "fail"
    assert "L-1216C47A >= 16" in vcpus.fix and "-c maxVcpuCount=8" in vcpus.fix
    assert found["API Gateway CloudWatch Logs role"].mark == "✗"
    assert "-c apiGatewayCloudWatchRole=true" in found["API Gateway CloudWatch Logs role"].fix
    engine = found["Aurora PostgreSQL 17.7"]
    assert engine.status == "fail" and "-c postgresVersion=17.x" in engine.fix


def test_managed_instances_unavailable_and_access_denied(
    stubbed: tuple[Clients, dict[str, Stubber]],
) -> None:
    clients, stubs = stubbed
    stubs["sts"].add_response("get_caller_identity", IDENTITY)
    stubs["lam"].add_client_error(
        "list_capacity_providers", "UnknownOperationException", "Unknown operation", 400
    )
    stubs["lam"].add_client_error("get_account_settings", "AccessDeniedException", "denied", 403)
    stubs["quotas"].add_response(
        "get_service_quota", {"Quota": {"QuotaCode": "L-1216C47A", "Value": 64.0}}
    )
    stubs["apigw"].add_response("get_account", {})
    stubs["rds"].add_response("describe_db_engine_versions", {"DBEngineVersions": [{}]})
    found = by_name(run_checks(settings(), clients, docker_ok))
    # no role yet, and the stack sets it (the default): not a failed prerequisite
    assert found["API Gateway CloudWatch Logs role"].status == "ok"
    assert "the stack sets it" in found["API Gateway CloudWatch Logs role"].detail
    lmi = found["Lambda Managed Instances"]
    assert lmi.status == "fail"
    assert "UnknownOperationException" in lmi.detail
    denied = found["Lambda concurrency quota"]
    assert denied.mark == "?"  # could not tell: not a failed prerequisite


def test_no_credentials_fails_the_first_check_and_skips_the_aws_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    checks = run_checks(settings(), Clients.for_region(REGION), docker_ok)
    assert [c.name for c in checks] == ["credentials (STS)", "Docker with arm64 (layer build)"]
    assert checks[0].status == "fail"
    assert "no AWS credentials found" in checks[0].detail


def test_cli_prints_the_table_and_exits_1_when_a_check_fails(
    stubbed: tuple[Clients, dict[str, Stubber]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients, stubs = stubbed
    answer_all(stubs, concurrency=10)
    monkeypatch.setattr(Clients, "for_region", classmethod(lambda cls, region: clients))
    monkeypatch.setattr(preflight, "check_docker", docker_ok)
    code = main(["aws", "preflight", "--region", REGION, "-c", "arms=standard,managed"])
    printed = capsys.readouterr()
    assert code == 1
    assert "✗" in printed.out and "✓" in printed.out
    assert "preflight: 1 check(s) failed: Lambda concurrency quota" in printed.err


def _runner(arch: str, rc: int = 0, stderr: str = "") -> Any:
    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        assert argv[:2] == ["docker", "info"]
        return subprocess.CompletedProcess(argv, rc, stdout=arch + "\n", stderr=stderr)

    return run


def test_docker_check_reads_the_architecture_and_binfmt(tmp_path: Path) -> None:
    assert check_docker(_runner("aarch64"), tmp_path).status == "ok"
    missing = check_docker(_runner("x86_64"), tmp_path)
    assert missing.status == "fail" and "tonistiigi/binfmt --install arm64" in missing.fix
    (tmp_path / "qemu-aarch64").write_text("enabled\n")
    assert check_docker(_runner("x86_64"), tmp_path).status == "ok"
    down = check_docker(_runner("", 1, "Cannot connect to the Docker daemon"), tmp_path)
    assert down.status == "fail" and "Cannot connect" in down.detail
