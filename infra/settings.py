"""Every knob of the CDK app, read from CDK context, validated before a single construct exists.

Why a frozen dataclass: the stack is a measurement instrument, so its configuration must be one
typed, immutable value that the tests, the constructs and the outputs all read the same way. A bad
value stops synthesis with one sentence that names the context key, the value, the rule and the
fix, instead of a CloudFormation rollback twenty minutes into a deploy.

Context values arrive as JSON types from ``cdk.json`` and as strings from ``-c key=value``; both
are accepted.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from functions import contract
from functions.contract import ARMS, DEFAULT_ARMS, POOL_MODES, POOLER_DEFAULTS

LMI_MIN_MEMORY_MB = 2048
"""Lambda Managed Instances refuses functions below 2 GB (FACTS.md); the CDK L2 does not check."""

LMI_MAX_CONCURRENCY_PER_VCPU = 64
"""LMI allows at most 64 concurrent requests per vCPU of an execution environment."""

LMI_MEMORY_GIB_PER_VCPU = (2, 4, 8)
"""The ratios ExecutionEnvironmentMemoryGiBPerVCpu accepts."""

POSTGRES_VERSIONS: tuple[str, ...] = ("17.4", "17.5", "17.6", "17.7", "17.9")
"""Aurora PostgreSQL 17 versions that aws-cdk-lib 2.275 has constants for (VER_17_x)."""

INSTANCE_TYPE = re.compile(r"^(?P<family>[a-z]+)(?P<gen>\d+)(?P<attrs>[a-z-]*)\.(?P<size>\w+)$")
"""m8g.large, c7gn.xlarge, r7gd.2xlarge: family letters, generation, attributes, size."""

LMI_FAMILIES = ("c", "m", "r")
"""Instance families Managed Instances run: compute optimized (C), general purpose (M) and memory
optimized (R), .large or larger (Lambda guide lambda-managed-instances; AWS Compute Blog "Build
high-performance apps with AWS Lambda Managed Instances"). Burstable t* types are not among them."""

TOO_SMALL_SIZES = ("nano", "micro", "small", "medium")
"""Sizes below .large, which Managed Instances do not use."""

CDK_MIN_VCPU_COUNT = 12
"""aws-cdk-lib's CapacityProvider throws for maxVCpuCount below 12 (the API itself allows 2)."""

WORKER_MEMORY_MIB = 64
"""Memory one Python worker (one concurrent request slot) of a managed EE takes, rounded up.

Measured 2026-12-01 by ``scripts/worker_memory.py --python <python3.13>`` (Python 3.13.0,
awslambdaric 4.2.2, psycopg 3.3.9, boto3 1.44): a fresh process that imported
``awslambdaric.bootstrap``, boto3 and ``functions.app.handler``, created a Secrets Manager client
and served two seed requests (connect, 2 x ``select now()``, close) against a real PostgreSQL:
60.2-60.8 MiB RSS, 53.4-54.0 MiB PSS over two runs (49.3-49.7 MiB RSS after the imports alone).
RSS, not PSS, because Managed Instances run init once per worker process, so what the imports
allocate is each worker's own. Not measured on Lambda itself.
"""

POOLER_MEMORY_MIB = 160
"""Memory of what an EE runs besides its workers: PgBouncer (~5 MiB idle, ~2 KiB per client
buffer), the extension's own Python process with boto3 (~50 MiB, like a worker after import) and
awslambdaric's parent process (~50 MiB). A rounded-up sum, not a measurement on Lambda."""

LMI_MEMORY_HEADROOM = 0.8
"""Share of the EE's memory the workers and the pooler may plan to use; the rest is left for the
page cache and growth under load (result sets, TLS buffers). A choice, not an AWS figure."""

RUNTIMES = contract.RUNTIMES
"""The function under test on every arm: python3.13 (functions/app) or nodejs24.x
(functions/nodejs, pg). Both are Managed Instances runtimes (Python 3.13+, Node.js 22+)."""

DEFAULT_SLOTS_PER_VCPU = contract.DEFAULT_SLOTS_PER_VCPU
"""AWS's default per-EE concurrency per vCPU on Managed Instances (FACTS.md)."""

NODE_RUNTIME_MEMORY_MIB = 192
"""Memory of one managed Node.js EE's runtime before its requests: one node process whose
aws-lambda-ric runs 8 worker threads (its default for 1 vCPU), each with the handler and pg
loaded. Measured 2026-12-01 by ``scripts/ee_memory.py --runtime nodejs --slots 64`` (Node
24.21.0, aws-lambda-ric 4.0.2, pg 8.16.3, local stack, three runs): 127-164 MiB PSS idle,
132-171 MiB with 64 seed requests in flight (190 MiB RSS); rounded up. Not measured on Lambda."""

NODE_SLOT_MEMORY_MIB = 1
"""Memory one more in-flight Node.js request takes (a pg Client, its socket buffers, the
promise chain): the same measurement gives 0.07 MiB per slot; rounded up to 1."""


class SettingsError(ValueError):
    """A context value the stack cannot be built with; the message says which and how to fix it."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The resolved context of one synthesis. Field docs double as the cdk.json documentation."""

    stack_name: str = "PoolbenchStack"
    """CloudFormation stack name; also the top-level key of the outputs file."""
    arms: tuple[str, ...] = DEFAULT_ARMS
    """Arms to deploy, from ``ARMS``; ``proxy`` adds an RDS Proxy and a function behind it."""
    memory_mb: int = 2048
    """Memory of every arm's function (identical, so only the execution model differs)."""
    timeout_seconds: int = 29
    """Timeout of every arm's function; API Gateway REST integrations end at 29 s anyway."""
    managed_instance_types: tuple[str, ...] = ("m8g.large",)
    """Instance types the capacity provider may launch (arm64 only); m8g.large as in the seed."""
    runtime: str = "python"
    """The function under test on every arm: python (python3.13) or nodejs (nodejs24.x, pg)."""
    per_environment_max_concurrency: int = 0
    """Concurrent requests per managed execution environment; 0: the runtime's default per vCPU
    (Python 16, Node.js 64) times the EE's vCPUs."""
    memory_gib_per_vcpu: int = 2
    """ExecutionEnvironmentMemoryGiBPerVCpu of the managed arm: 2, 4 or 8."""
    min_execution_environments: int = 3
    """Managed arm: execution environments kept ready (LMI default 3)."""
    max_execution_environments: int = 6
    """Managed arm: upper bound on execution environments (a cost guard)."""
    max_vcpu_count: int = 16
    """Capacity provider: most vCPUs it may run at once (a cost guard; service default 400)."""
    min_acu: float = 0.5
    """Aurora Serverless v2 minimum capacity (ACU)."""
    max_acu: float = 4.0
    """Aurora Serverless v2 maximum capacity (ACU); 4 ACU allows ~823 connections."""
    postgres_version: str = "17.7"
    """Aurora PostgreSQL engine version, one of ``POSTGRES_VERSIONS``."""
    db_name: str = "poolbench"
    """Database the arms connect to."""
    max_azs: int = 2
    """Availability zones of the VPC (Aurora needs subnets in at least 2)."""
    nat_gateways: int = 1
    """>0: private subnets with NAT gateways (egress every AWS sample for Managed Instances has);
    0: isolated subnets reaching AWS APIs through VPC endpoints only (unverified on AWS)."""
    pool_mode: str = POOLER_DEFAULTS.pool_mode
    """PgBouncer pool_mode in every execution environment."""
    default_pool_size: int = POOLER_DEFAULTS.default_pool_size
    """PgBouncer default_pool_size per (db, user) per execution environment (PgBouncer default)."""
    min_pool_size: int = POOLER_DEFAULTS.min_pool_size
    """PgBouncer min_pool_size."""
    server_idle_timeout: int = POOLER_DEFAULTS.server_idle_timeout
    """PgBouncer server_idle_timeout, seconds."""
    max_client_conn: int = POOLER_DEFAULTS.max_client_conn
    """PgBouncer max_client_conn, as in the seed."""
    api_name: str = "poolbench"
    """API Gateway REST API name (an output: the CloudWatch collector reads it)."""
    api_stage: str = "prod"
    """API Gateway stage name."""
    api_rate_limit: int = 500
    """Stage throttle, requests per second: a guard against an open endpoint being abused."""
    api_burst_limit: int = 1000
    """Stage throttle burst."""
    log_retention_days: int = 14
    """Retention of the log groups this stack creates."""
    api_gateway_cloud_watch_role: bool = True
    """Set the account's API Gateway CloudWatch Logs role (needed for access logs; account-wide,
    retained on destroy). False: the account already has one (``aws apigateway get-account``)."""
    bundle: bool = True
    """False skips Docker bundling of the layer and code assets (tests; same template)."""
    nag: bool = True
    """Run the cdk-nag AwsSolutions checks at synthesis (errors fail ``cdk synth``)."""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise _fail("runtime", self.runtime, "must be python or nodejs", "nodejs")
        if self.per_environment_max_concurrency == 0:
            default = default_slots(self.runtime, self.managed_vcpus)
            object.__setattr__(self, "per_environment_max_concurrency", default)
        _validate(self)

    @property
    def managed(self) -> bool:
        """Whether a Lambda Managed Instances arm (and so a capacity provider) is deployed."""
        return any(contract.arm(a).managed for a in self.arms)

    @property
    def proxy(self) -> bool:
        """Whether the RDS Proxy arm is deployed."""
        return "proxy" in self.arms

    @property
    def managed_vcpus(self) -> float:
        """vCPUs of one managed execution environment: memory divided by the GiB-per-vCPU ratio."""
        return self.memory_mb / 1024 / self.memory_gib_per_vcpu

    @property
    def isolated(self) -> bool:
        """No NAT gateway: the subnets have no route out; AWS APIs only through VPC endpoints."""
        return self.nat_gateways == 0

    @property
    def slot_memory_model(self) -> tuple[int, int, str]:
        """(MiB the runtime takes before any slot, MiB per slot, how to say it): Python runs a
        worker process per slot; Node.js one process whose worker threads share the slots."""
        if self.runtime == "nodejs":
            return NODE_RUNTIME_MEMORY_MIB, NODE_SLOT_MEMORY_MIB, "Node.js requests"
        return 0, WORKER_MEMORY_MIB, "workers"

    @property
    def managed_memory_needed_mib(self) -> int:
        """What one managed EE plans to use: the runtime, its slots, the pooler."""
        base, per_slot, _ = self.slot_memory_model
        return base + self.per_environment_max_concurrency * per_slot + POOLER_MEMORY_MIB

    def pooler_environment(self) -> dict[str, str]:
        """The PgBouncer knobs as the extension's environment variables (DESIGN.md contract)."""
        return contract.PoolerKnobs(
            pool_mode=self.pool_mode,
            default_pool_size=self.default_pool_size,
            min_pool_size=self.min_pool_size,
            server_idle_timeout=self.server_idle_timeout,
            max_client_conn=self.max_client_conn,
        ).environment()

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> Settings:
        """Build from CDK context (``get`` = ``node.try_get_context``); absent keys: defaults."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = context_key(f.name)
            raw = get(key)
            if raw is None:
                continue
            values[f.name] = _coerce(key, raw, f.default)
        return cls(**values)


def context_key(field_name: str) -> str:
    """The camelCase context key of a field: ``memory_mb`` -> ``memoryMb``."""
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def defaults_as_context() -> dict[str, Any]:
    """Every knob with its default, keyed as in cdk.json (tests check cdk.json against this)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        value = f.default
        out[context_key(f.name)] = list(value) if isinstance(value, tuple) else value
    return out


T = TypeVar("T")


def _coerce(key: str, raw: Any, default: T) -> T:
    """Turn a context value (JSON or ``-c`` string) into the default's type, or say why not."""
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw  # type: ignore[return-value]
            text = str(raw).strip().lower()
            if text in ("true", "1", "yes"):
                return True  # type: ignore[return-value]
            if text in ("false", "0", "no"):
                return False  # type: ignore[return-value]
            raise ValueError(raw)
        if isinstance(default, tuple):
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())  # type: ignore[return-value]
        if isinstance(default, int):
            number = float(raw)
            if not number.is_integer():
                raise ValueError(raw)
            return int(number)  # type: ignore[return-value]
        if isinstance(default, float):
            return float(raw)  # type: ignore[return-value]
        return str(raw)  # type: ignore[return-value]
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise SettingsError(
            f"context '{key}'={raw!r}: expected {kind}; set -c {key}=<{kind}>"
        ) from None


def default_slots(runtime: str, vcpus: float) -> int:
    """AWS's default per-EE concurrency for the runtime: its default per vCPU x the vCPUs."""
    return DEFAULT_SLOTS_PER_VCPU[runtime] * max(int(vcpus), 1)


def _fail(key: str, value: object, why: str, fix: str) -> SettingsError:
    shown = ",".join(value) if isinstance(value, tuple) else value
    return SettingsError(f"context '{key}'={shown}: {why}; set -c {key}={fix}")


def _validate(s: Settings) -> None:
    """Raise the first rule a value breaks; one message, naming key, rule and a working value."""
    unknown = [a for a in s.arms if a not in ARMS]
    if unknown or not s.arms:
        raise _fail(
            "arms",
            s.arms,
            f"unknown arm {unknown[0]!r}, arms are {', '.join(ARMS)}"
            if unknown
            else "at least one arm is needed",
            "standard,managed",
        )
    if len(set(s.arms)) != len(s.arms):
        raise _fail("arms", s.arms, "an arm is listed twice", "standard,managed")
    if not 128 <= s.memory_mb <= 10240:
        raise _fail("memoryMb", s.memory_mb, "Lambda memory is 128..10240 MB", "2048")
    if s.managed and s.memory_mb < LMI_MIN_MEMORY_MB:
        raise _fail(
            "memoryMb",
            s.memory_mb,
            f"Lambda Managed Instances needs >= {LMI_MIN_MEMORY_MB} MB "
            "(every arm gets the same memory)",
            str(LMI_MIN_MEMORY_MB),
        )
    if s.memory_gib_per_vcpu not in LMI_MEMORY_GIB_PER_VCPU:
        raise _fail("memoryGibPerVcpu", s.memory_gib_per_vcpu, "must be one of 2, 4, 8", "2")
    if s.managed and s.managed_vcpus < 1:
        raise _fail(
            "memoryMb",
            s.memory_mb,
            f"a managed execution environment needs >= 1 vCPU, i.e. >= "
            f"{1024 * s.memory_gib_per_vcpu} MB at memoryGibPerVcpu={s.memory_gib_per_vcpu}",
            str(1024 * s.memory_gib_per_vcpu),
        )
    limit = int(LMI_MAX_CONCURRENCY_PER_VCPU * s.managed_vcpus)
    if not 1 <= s.per_environment_max_concurrency <= max(limit, 1):
        raise _fail(
            "perEnvironmentMaxConcurrency",
            s.per_environment_max_concurrency,
            f"must be 1..{limit} ({LMI_MAX_CONCURRENCY_PER_VCPU} per vCPU, "
            f"{s.managed_vcpus:g} vCPU per execution environment)",
            # the runtime's default (Python 16, Node.js 64 per vCPU), or the most that fits
            str(min(default_slots(s.runtime, s.managed_vcpus), max(limit, 1))),
        )
    if not 1 <= s.timeout_seconds <= 900:
        raise _fail("timeoutSeconds", s.timeout_seconds, "Lambda timeout is 1..900 s", "29")
    if not s.managed_instance_types:
        raise _fail("managedInstanceTypes", (), "at least one instance type", "m8g.large")
    for itype in s.managed_instance_types:
        problem = _instance_type_problem(itype)
        if problem:
            raise _fail("managedInstanceTypes", s.managed_instance_types, problem, "m8g.large")
    if s.managed:
        _validate_managed_memory(s)
    if not 0 <= s.min_execution_environments <= s.max_execution_environments <= 15000:
        raise _fail(
            "minExecutionEnvironments",
            s.min_execution_environments,
            f"needs 0 <= minExecutionEnvironments <= maxExecutionEnvironments "
            f"({s.max_execution_environments}) <= 15000",
            "3",
        )
    if s.min_execution_environments == 0 and s.max_execution_environments != 0:
        raise _fail(
            "minExecutionEnvironments",
            0,
            "Lambda accepts a minimum of 0 only when maxExecutionEnvironments is 0 too",
            "3",
        )
    if not CDK_MIN_VCPU_COUNT <= s.max_vcpu_count <= 15000:
        raise _fail(
            "maxVcpuCount",
            s.max_vcpu_count,
            f"must be {CDK_MIN_VCPU_COUNT}..15000 (the CDK CapacityProvider refuses fewer than "
            f"{CDK_MIN_VCPU_COUNT})",
            "16",
        )
    managed_arms = sum(1 for a in s.arms if contract.arm(a).managed)
    min_vcpus = managed_arms * s.min_execution_environments * s.managed_vcpus
    if s.managed and min_vcpus > s.max_vcpu_count:
        per_arm = f" x {managed_arms} managed arms" if managed_arms > 1 else ""
        raise _fail(
            "maxVcpuCount",
            s.max_vcpu_count,
            f"{s.min_execution_environments} minimum execution environments x "
            f"{s.managed_vcpus:g} vCPU{per_arm} need {min_vcpus:g} vCPUs; the version would "
            "never become ACTIVE",
            str(math.ceil(min_vcpus)),
        )
    for key, acu in (("minAcu", s.min_acu), ("maxAcu", s.max_acu)):
        if not 0 <= acu <= 256 or (acu * 2) != int(acu * 2):
            raise _fail(
                key, acu, "ACU is 0..256 in steps of 0.5", "0.5" if key == "minAcu" else "4"
            )
    if s.max_acu < 1:
        raise _fail("maxAcu", s.max_acu, "Aurora Serverless v2 needs maxAcu >= 1", "4")
    if s.min_acu > s.max_acu:
        raise _fail(
            "minAcu", s.min_acu, f"min ACU is above maxAcu ({s.max_acu:g})", f"{s.max_acu:g}"
        )
    if s.postgres_version not in POSTGRES_VERSIONS:
        raise _fail(
            "postgresVersion",
            s.postgres_version,
            f"Aurora PostgreSQL 17 versions known here are {', '.join(POSTGRES_VERSIONS)}",
            "17.7",
        )
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", s.db_name):
        raise _fail("dbName", s.db_name, "must be a lower-case PostgreSQL identifier", "poolbench")
    if not 2 <= s.max_azs <= 6:
        raise _fail("maxAzs", s.max_azs, "Aurora needs subnets in >= 2 zones (2..6)", "2")
    if not 0 <= s.nat_gateways <= s.max_azs:
        raise _fail("natGateways", s.nat_gateways, f"must be 0..maxAzs ({s.max_azs})", "1")
    if s.pool_mode not in POOL_MODES:
        raise _fail(
            "poolMode", s.pool_mode, f"must be one of {', '.join(POOL_MODES)}", "transaction"
        )
    for key, number, fix in (
        ("defaultPoolSize", s.default_pool_size, "20"),
        ("maxClientConn", s.max_client_conn, "1000"),
        ("serverIdleTimeout", s.server_idle_timeout, "600"),
    ):
        if number < 1:
            raise _fail(key, number, "must be >= 1", fix)
    if not 0 <= s.min_pool_size <= s.default_pool_size:
        raise _fail("minPoolSize", s.min_pool_size, "must be 0..defaultPoolSize", "0")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", s.stack_name):
        raise _fail("stackName", s.stack_name, "not a CloudFormation stack name", "PoolbenchStack")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,128}", s.api_stage):
        raise _fail("apiStage", s.api_stage, "stage names are [A-Za-z0-9_]", "prod")
    if not s.api_name:
        raise _fail("apiName", s.api_name, "must not be empty", "poolbench")
    for key, number, fix in (
        ("apiRateLimit", s.api_rate_limit, "500"),
        ("apiBurstLimit", s.api_burst_limit, "1000"),
    ):
        if number < 1:
            raise _fail(key, number, "throttle limits must be >= 1", fix)
    if s.log_retention_days not in _RETENTION_DAYS:
        raise _fail(
            "logRetentionDays", s.log_retention_days, "not a CloudWatch Logs retention", "14"
        )


def _instance_type_problem(itype: str) -> str | None:
    """Why Managed Instances (with this arm64 layer) cannot use an instance type, or None."""
    match = INSTANCE_TYPE.match(itype)
    if match is None:
        return f"{itype!r} is not an EC2 instance type name"
    family, attrs, size = match["family"], match["attrs"], match["size"]
    if family.startswith("t"):
        return f"{itype!r} is burstable (t*); Managed Instances run C, M and R families"
    if family not in LMI_FAMILIES:
        return f"{itype!r}: Managed Instances run C, M and R families, not {family!r}"
    if "g" not in attrs:
        return f"{itype!r} is not an arm64 (Graviton) type; the layer and functions are arm64"
    if size in TOO_SMALL_SIZES:
        return f"{itype!r}: Managed Instances use .large or larger"
    return None


def _validate_managed_memory(s: Settings) -> None:
    """The slots must fit the EE: a worker process per slot in Python, a share of one process
    in Node.js (Settings.slot_memory_model)."""
    usable = int(s.memory_mb * LMI_MEMORY_HEADROOM)
    needed = s.managed_memory_needed_mib
    if needed <= usable:
        return
    base, per_slot, what = s.slot_memory_model
    fits = max((usable - POOLER_MEMORY_MIB - base) // per_slot, 1)
    memory = s.memory_mb
    while int(memory * LMI_MEMORY_HEADROOM) < needed:
        memory += 1024 * s.memory_gib_per_vcpu
    fix = f"{fits} (or keep it and set -c memoryMb={memory})" if memory <= 10240 else str(fits)
    raise _fail(
        "perEnvironmentMaxConcurrency",
        s.per_environment_max_concurrency,
        f"{s.per_environment_max_concurrency} {what} x {per_slot} MiB + "
        + (f"{base} MiB runtime + " if base else "")
        + f"{POOLER_MEMORY_MIB} MiB pooler = {needed} MiB exceed "
        f"{LMI_MEMORY_HEADROOM:.0%} of the {s.memory_mb} MiB execution environment",
        fix,
    )


_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
