"""The names every part of poolbench shares, defined once: arms, env vars, pooler defaults,
output keys, metric names.

Why one module: the layer's extension, the handler, the CDK app, the local stack, Locust and
the report all speak the same contract (docs/contracts.md). A name spelled out in five files
drifts; a name imported from here cannot. Standard library only, because it ships to Lambda:
in the function code asset (``functions/contract.py`` beside ``functions/app``) and in the
pooler layer (``/opt/functions/contract.py``, imported by the extension).

Adding an arm starts with one ``Arm(...)`` line in ``ARM_SPECS``; the layers read what it is
(Managed Instances or not, which pooler) from there instead of testing its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

# --- arms ----------------------------------------------------------------------------------


class Pooler(Enum):
    """What an arm's handler connects to."""

    IN_EE = "in-ee"
    """Its execution environment's own PgBouncer (the layer's extension), over a Unix socket."""
    SHARED = "shared"
    """One pooler shared by the whole arm (AWS: RDS Proxy; local: one PgBouncer), over TCP."""
    NONE = "none"
    """The database itself: no pooler anywhere, one connection per request in flight."""


@dataclass(frozen=True)
class Arm:
    """One arm: how Lambda runs it and what its handler connects to."""

    name: str
    managed: bool
    """Lambda Managed Instances (N slots per EE, a capacity provider) rather than one request
    per execution environment."""
    pooler: Pooler
    label: str
    """How the report and the verdict name it."""
    twin: str | None = None
    """The arm that differs from this one only by having the in-EE pooler (for a no-pooler
    arm): the verdict says how much of that arm's saving the pooler makes."""

    @property
    def title(self) -> str:
        """The arm in CamelCase, for CloudFormation IDs and output keys: ``ManagedDirect``."""
        return arm_title(self.name)

    @property
    def has_layer(self) -> bool:
        """Whether its functions carry the pooler layer (the in-EE PgBouncer extension)."""
        return self.pooler is Pooler.IN_EE

    @property
    def connects_direct(self) -> bool:
        """Whether the handler logs in over TCP with the role's password (CONNECT_DIRECT=1)."""
        return self.pooler is not Pooler.IN_EE


ARM_SPECS: tuple[Arm, ...] = (
    Arm("standard", managed=False, pooler=Pooler.IN_EE, label="standard Lambda"),
    Arm("managed", managed=True, pooler=Pooler.IN_EE, label="Managed Instances"),
    Arm("proxy", managed=False, pooler=Pooler.SHARED, label="standard Lambda + shared pooler"),
    Arm(
        "direct",
        managed=False,
        pooler=Pooler.NONE,
        label="standard Lambda without a pooler",
        twin="standard",
    ),
    Arm(
        "managed-direct",
        managed=True,
        pooler=Pooler.NONE,
        label="Managed Instances without a pooler",
        twin="managed",
    ),
)
ARMS: tuple[str, ...] = tuple(a.name for a in ARM_SPECS)
"""Every arm name, in the order the docs and the report list them."""
DEFAULT_ARMS: tuple[str, ...] = ("standard", "managed")
"""The seed experiment's two arms: what a run deploys and drives when none are named."""
_BY_NAME: Mapping[str, Arm] = {a.name: a for a in ARM_SPECS}


def arm_title(name: str) -> str:
    """An arm name in CamelCase: ``managed-direct`` -> ``ManagedDirect`` (CloudFormation IDs
    and output keys allow letters and digits only)."""
    return "".join(part.capitalize() for part in name.split("-"))


def arm(name: str) -> Arm:
    """The arm of that name; KeyError for a name that is not in ``ARMS``."""
    return _BY_NAME[name]


def db_role(name: str, prefix: str = "poolbench_") -> str:
    """The database role an arm logs in as: one per arm, so ``pg_stat_activity`` tells them
    apart. Hyphens become underscores: a role name is then a plain SQL identifier."""
    return prefix + name.replace("-", "_")


# --- the function under test ----------------------------------------------------------------

RUNTIMES: tuple[str, ...] = ("python", "nodejs")
"""The function under test, on every arm of a run (never per arm): the Python handler
(functions/app, python3.13) or the Node.js one (functions/nodejs, nodejs24.x, pg)."""
DEFAULT_RUNTIME = "python"
DEFAULT_SLOTS_PER_VCPU: Mapping[str, int] = {"python": 16, "nodejs": 64}
"""AWS's default per-EE concurrency per vCPU on Managed Instances, by runtime: Python runs a
process per slot, Node.js worker threads with async handlers."""


# --- environment variables (docs/contracts.md) -----------------------------------------------

ENV_ARM = "ARM"
ENV_DB_HOST = "DB_HOST"
ENV_DB_PORT = "DB_PORT"
ENV_DB_NAME = "DB_NAME"
ENV_DB_USER = "DB_USER"
ENV_DB_PASSWORD = "DB_PASSWORD"
ENV_DB_SECRET_ARN = "DB_SECRET_ARN"
ENV_CONNECT_DIRECT = "CONNECT_DIRECT"
ENV_CONNECT_TIMEOUT = "CONNECT_TIMEOUT"
ENV_FUNCTION_TIMEOUT_MS = "FUNCTION_TIMEOUT_MS"
ENV_EE_ID = "POOLBENCH_EE_ID"
ENV_POOLER_PORT = "POOLER_PORT"
ENV_POOLER_RUN_DIR = "POOLER_RUN_DIR"
ENV_PGBOUNCER_BIN = "PGBOUNCER_BIN"
ENV_SERVER_TLS_SSLMODE = "SERVER_TLS_SSLMODE"
ENV_POOL_MODE = "POOL_MODE"
ENV_DEFAULT_POOL_SIZE = "DEFAULT_POOL_SIZE"
ENV_MIN_POOL_SIZE = "MIN_POOL_SIZE"
ENV_SERVER_IDLE_TIMEOUT = "SERVER_IDLE_TIMEOUT"
ENV_MAX_CLIENT_CONN = "MAX_CLIENT_CONN"
ENV_ARM_ROLES = "ARM_ROLES"

DB_PORT_DEFAULT = 5432
POOLER_PORT_DEFAULT = 6432
PGBOUNCER_BIN_DEFAULT = "/opt/bin/pgbouncer"
POOLER_RUN_DIR_DEFAULT = "/tmp"
POOL_MODES: tuple[str, ...] = ("transaction", "session", "statement")


# --- pooler defaults -------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolerKnobs:
    """PgBouncer's tunable settings with their one set of defaults, as the extension reads
    them from its environment. The CDK app, the local stack and the extension all start here."""

    pool_mode: str = "transaction"
    default_pool_size: int = 20
    """PgBouncer's own default: 20 server connections per (database, user) per pooler."""
    min_pool_size: int = 0
    server_idle_timeout: int = 600
    """Seconds a server connection may sit idle before PgBouncer closes it."""
    max_client_conn: int = 1000
    """As in the seed experiment."""

    def environment(self) -> dict[str, str]:
        """The knobs as the extension's environment variables."""
        return {
            ENV_POOL_MODE: self.pool_mode,
            ENV_DEFAULT_POOL_SIZE: str(self.default_pool_size),
            ENV_MIN_POOL_SIZE: str(self.min_pool_size),
            ENV_SERVER_IDLE_TIMEOUT: str(self.server_idle_timeout),
            ENV_MAX_CLIENT_CONN: str(self.max_client_conn),
        }

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> PoolerKnobs:
        """The knobs an environment sets, defaults for the rest; ValueError on a bad number."""
        d = POOLER_DEFAULTS
        return cls(
            pool_mode=env.get(ENV_POOL_MODE, d.pool_mode),
            default_pool_size=int(env.get(ENV_DEFAULT_POOL_SIZE, d.default_pool_size)),
            min_pool_size=int(env.get(ENV_MIN_POOL_SIZE, d.min_pool_size)),
            server_idle_timeout=int(env.get(ENV_SERVER_IDLE_TIMEOUT, d.server_idle_timeout)),
            max_client_conn=int(env.get(ENV_MAX_CLIENT_CONN, d.max_client_conn)),
        )


POOLER_DEFAULTS = PoolerKnobs()


# --- the Node.js runtime's thread pool -------------------------------------------------------

ENV_UV_THREADPOOL_SIZE = "UV_THREADPOOL_SIZE"
LIBUV_THREADPOOL_DEFAULT = 4
"""libuv's pool when UV_THREADPOOL_SIZE is unset: one per process, shared by its threads."""
NODE_WORKERS_PER_VCPU = 8
"""aws-lambda-ric's worker threads per vCPU of a managed EE (its ``getWorkerCount``)."""


def node_workers(vcpus: float) -> int:
    """aws-lambda-ric's worker threads in a managed EE of that many vCPUs (at least one)."""
    return NODE_WORKERS_PER_VCPU * max(int(vcpus), 1)


def node_threadpool_size(workers: int) -> int:
    """UV_THREADPOOL_SIZE for a managed Node.js EE: a thread for each worker's open /next poll
    (the client's native ``Next`` holds one while it waits), plus libuv's default 4 for the
    handlers' own pool work: pg's SCRAM login (WebCrypto) and ``dns.lookup`` of the database
    host. At the default 4 the polls hold every thread and a login straight to the database
    waits (docs/nodejs.md, "A finding"). Standard EEs keep one poll open: they need none."""
    return workers + LIBUV_THREADPOOL_DEFAULT


# --- the outputs file (the target) -------------------------------------------------------------

OUT_API_URL = "ApiUrl"
OUT_ARMS = "Arms"
OUT_METRICS_SOURCE = "MetricsSource"
OUT_METRICS_URL = "MetricsUrl"
OUT_REGION = "Region"
OUT_CAPACITY_PROVIDER = "CapacityProviderName"
OUT_DB_CLUSTER = "DbClusterIdentifier"
OUT_API_NAME = "ApiName"
OUT_API_STAGE = "ApiStage"
OUT_PROBE_FUNCTION = "ProbeFunctionName"
OUT_FUNCTION_TIMEOUT = "FunctionTimeoutSeconds"
OUT_RUNTIME = "Runtime"
"""The function under test on every arm (``RUNTIMES``); absent in a stack from before it: python."""


def function_name_output(arm_name: str) -> str:
    """``<Arm>FunctionName``: ``StandardFunctionName``, ``ManagedDirectFunctionName``."""
    return f"{arm_title(arm_name)}FunctionName"


# --- metric names (CloudWatch's, and the local samples' of the same meaning) -------------------

CONCURRENT_EXECUTIONS = "ConcurrentExecutions"
EE_CONCURRENCY = "ExecutionEnvironmentConcurrency"
EE_CONCURRENCY_LIMIT = "ExecutionEnvironmentConcurrencyLimit"
EXECUTION_ENVIRONMENTS = "ExecutionEnvironments"
INVOCATIONS = "Invocations"
ERRORS = "Errors"
THROTTLES = "Throttles"
COLD_STARTS = "ColdStarts"
DURATION = "Duration"
DATABASE_CONNECTIONS = "DatabaseConnections"

# --- targets ---------------------------------------------------------------------------------

TARGETS: tuple[str, ...] = ("local", "aws")
"""Where a run's arms live: the local stack, or a deployed CloudFormation stack."""
