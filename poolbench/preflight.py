"""`poolbench aws preflight`: what the account and this machine need before `cdk deploy`.

Each check is one AWS call (or one local command) with short timeouts, and answers ✓, ✗ with
the fix, or ? when it could not tell (a permission this caller lacks is not a failed
prerequisite). The clients are passed in, so the tests run every check against botocore's
Stubber or moto; `run --target aws` reuses the credential check before any load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions import contract
from input_errors import InputError
from poolbench.aws import aws_error_line, check_config, check_credentials, session

REPO_ROOT = Path(__file__).resolve().parent.parent
EC2_ON_DEMAND_STANDARD_VCPUS = "L-1216C47A"
"""Service Quotas: Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, in vCPUs;
the capacity provider's m8g/c8g/r8g instances count against it."""
PROXY_ENGINE_NOTE = (
    "RDS Proxy supports Aurora PostgreSQL 17 per the RDS Proxy documentation "
    "(supported engines); check the proxy arm's version there for this region"
)
"""Arms that run on standard Lambda and so count against the account's concurrency quota."""


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "fail", "unknown"
    detail: str
    fix: str = ""

    @property
    def mark(self) -> str:
        return {"ok": "✓", "fail": "✗"}.get(self.status, "?")


@dataclass(frozen=True)
class PreflightSettings:
    """What the deploy will ask for: from cdk.json's context, with -c overrides."""

    region: str
    arms: tuple[str, ...]
    users: int
    max_vcpus: int
    postgres_version: str
    stack_sets_apigw_role: bool = True
    """`-c apiGatewayCloudWatchRole` (default true): the stack sets the account's role."""


def cdk_context(
    overrides: Sequence[str], cdk_json: Path = REPO_ROOT / "cdk.json"
) -> dict[str, Any]:
    """cdk.json's context with `-c key=value` applied, as `cdk deploy -c` would see it."""
    context: dict[str, Any] = {}
    if cdk_json.is_file():
        context = dict(json.loads(cdk_json.read_text(encoding="utf-8")).get("context", {}))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"-c {item!r}: expected key=value, e.g. -c maxVcpuCount=32")
        context[key] = value
    return context


def _arms(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(a) for a in value)
    return tuple(a.strip() for a in str(value).split(",") if a.strip())


def settings_from_context(region: str, users: int, context: Mapping[str, Any]) -> PreflightSettings:
    try:
        max_vcpus = int(context.get("maxVcpuCount", 16))
    except (TypeError, ValueError):
        raise InputError(f"-c maxVcpuCount={context.get('maxVcpuCount')!r}: not a number") from None
    return PreflightSettings(
        region=region,
        arms=_arms(context.get("arms", list(contract.DEFAULT_ARMS))),
        users=users,
        max_vcpus=max_vcpus,
        postgres_version=str(context.get("postgresVersion", "17.7")),
        stack_sets_apigw_role=str(context.get("apiGatewayCloudWatchRole", True)).lower()
        not in ("false", "0", "no"),
    )


def _guard(name: str, call: Callable[[], Check]) -> Check:
    """A check whose AWS call failed says why, in one line; access denied is '?', not ✗."""
    try:
        return call()
    except Exception as exc:
        line = aws_error_line(exc)
        if line is None:
            raise
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if "AccessDenied" in str(code) or "UnauthorizedOperation" in str(code):
            return Check(name, "unknown", line, "run the preflight with a role that may read it")
        return Check(name, "fail", line, "see the error")


def check_identity(region: str, sts: Any) -> Check:
    identity = check_credentials(region, sts)
    return Check("credentials (STS)", "ok", f"account {identity.account}, {identity.arn}")


def check_managed_instances(lam: Any) -> Check:
    name = "Lambda Managed Instances"
    if not hasattr(lam, "list_capacity_providers"):
        return Check(
            name, "unknown", "this botocore has no ListCapacityProviders", "upgrade boto3/botocore"
        )
    lam.list_capacity_providers(MaxItems=1)
    return Check(name, "ok", "ListCapacityProviders answered: available in this region")


def check_lambda_concurrency(lam: Any, settings: PreflightSettings) -> Check:
    name = "Lambda concurrency quota"
    limits = lam.get_account_settings().get("AccountLimit", {})
    quota = int(limits.get("ConcurrentExecutions", 0))
    unreserved = int(limits.get("UnreservedConcurrentExecutions", quota))
    standard = [a for a in settings.arms if not contract.arm(a).managed]
    need = settings.users * len(standard)
    detail = f"{quota} (unreserved {unreserved}) for {need} = {settings.users} users x {standard}"
    if unreserved >= need:
        return Check(name, "ok", detail)
    return Check(
        name,
        "fail",
        detail,
        f"request 'Concurrent executions' >= {need} in Service Quotas (Lambda), or run fewer "
        "--users",
    )


def check_ec2_vcpus(quotas: Any, settings: PreflightSettings) -> Check:
    name = "EC2 On-Demand vCPU quota"
    if not any(contract.arm(a).managed for a in settings.arms):
        return Check(name, "ok", "no managed arm: no capacity provider")
    answer = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=EC2_ON_DEMAND_STANDARD_VCPUS)
    value = float(answer["Quota"]["Value"])
    detail = f"{value:g} vCPUs for the capacity provider's maximum of {settings.max_vcpus}"
    if value >= settings.max_vcpus:
        return Check(name, "ok", detail)
    return Check(
        name,
        "fail",
        detail,
        f"request {EC2_ON_DEMAND_STANDARD_VCPUS} >= {settings.max_vcpus} in Service Quotas "
        f"(EC2), or deploy with -c maxVcpuCount={int(value)}",
    )


def check_apigateway_role(apigw: Any, settings: PreflightSettings) -> Check:
    """Access logs need the account's CloudWatch Logs role: set already, or set by the stack."""
    name = "API Gateway CloudWatch Logs role"
    role = apigw.get_account().get("cloudwatchRoleArn")
    if role:
        return Check(name, "ok", f"account role {role}")
    if settings.stack_sets_apigw_role:
        return Check(
            name,
            "ok",
            "none in this region yet: the stack sets it (apiGatewayCloudWatchRole=true; "
            "account-wide, kept on destroy)",
        )
    return Check(
        name,
        "fail",
        "no cloudwatchRoleArn in this region and -c apiGatewayCloudWatchRole=false: the "
        "stage's access logs would fail the deploy",
        "deploy with -c apiGatewayCloudWatchRole=true, or set one: aws apigateway "
        "update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=<role arn>",
    )


def check_engine_version(rds: Any, settings: PreflightSettings) -> Check:
    name = f"Aurora PostgreSQL {settings.postgres_version}"
    answer = rds.describe_db_engine_versions(
        Engine="aurora-postgresql", EngineVersion=settings.postgres_version
    )
    found = answer.get("DBEngineVersions", [])
    proxy = f"; {PROXY_ENGINE_NOTE}" if "proxy" in settings.arms else ""
    if found:
        return Check(name, "ok", f"available in {settings.region}{proxy}")
    return Check(
        name,
        "fail",
        f"not offered in {settings.region}{proxy}",
        "list versions with `aws rds describe-db-engine-versions --engine aurora-postgresql` "
        "and deploy with -c postgresVersion=17.x",
    )


Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def check_docker(run: Runner = _run, binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc")) -> Check:
    """Docker answers, and can run arm64 (natively, or through a binfmt qemu-aarch64)."""
    name = "Docker with arm64 (layer build)"
    if shutil.which("docker") is None and run is _run:
        return Check(name, "fail", "docker not found", "install Docker (the layer builds in it)")
    info = run(["docker", "info", "--format", "{{.Architecture}}"])
    if info.returncode != 0:
        first = (info.stderr.strip().splitlines() or ["docker info failed"])[0]
        return Check(name, "fail", first, "start the Docker daemon (and allow this user)")
    arch = info.stdout.strip()
    if arch in ("aarch64", "arm64"):
        return Check(name, "ok", f"Docker on {arch}: native")
    if any(binfmt_dir.glob("qemu-aarch64*")):
        return Check(name, "ok", f"Docker on {arch}, qemu-aarch64 registered (emulated)")
    return Check(
        name,
        "fail",
        f"Docker on {arch}, no qemu-aarch64 in {binfmt_dir}",
        "docker run --privileged --rm tonistiigi/binfmt --install arm64",
    )


@dataclass(frozen=True)
class Clients:
    sts: Any
    lam: Any
    quotas: Any
    apigw: Any
    rds: Any

    @classmethod
    def for_region(cls, region: str) -> Clients:
        s = session(region)
        config = check_config()
        return cls(
            sts=s.client("sts", config=config),
            lam=s.client("lambda", config=config),
            quotas=s.client("service-quotas", config=config),
            apigw=s.client("apigateway", config=config),
            rds=s.client("rds", config=config),
        )


def run_checks(
    settings: PreflightSettings, clients: Clients, docker: Callable[[], Check] | None = None
) -> list[Check]:
    """Every check; without credentials the AWS ones are skipped with the one line why."""
    docker = docker or check_docker  # looked up at call time (tests replace it)
    try:
        checks = [check_identity(settings.region, clients.sts)]
    except InputError as exc:
        return [
            Check("credentials (STS)", "fail", str(exc), "see the message"),
            docker(),
        ]
    checks += [
        _guard("Lambda Managed Instances", lambda: check_managed_instances(clients.lam)),
        _guard("Lambda concurrency quota", lambda: check_lambda_concurrency(clients.lam, settings)),
        _guard("EC2 On-Demand vCPU quota", lambda: check_ec2_vcpus(clients.quotas, settings)),
        _guard(
            "API Gateway CloudWatch Logs role",
            lambda: check_apigateway_role(clients.apigw, settings),
        ),
        _guard("Aurora engine version", lambda: check_engine_version(clients.rds, settings)),
        docker(),
    ]
    return checks
