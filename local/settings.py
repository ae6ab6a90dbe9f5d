"""Every knob of the local stack, one frozen dataclass per concern, built once at the edge.

Each field names the AWS setting it mirrors, so a local result can be read against a deployment.
validate() is the one place that rejects nonsense (negative slots, min > max) with a message
that names the knob and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from functions import contract
from functions.contract import ARMS, DEFAULT_ARMS
from input_errors import InputError

RUNTIMES = contract.RUNTIMES
DEFAULT_SLOTS_PER_VCPU = contract.DEFAULT_SLOTS_PER_VCPU
# A local managed EE stands for a 1-vCPU EE (the stack's 2048 MB at 2 GiB per vCPU), so its
# default slots are the runtime's per-vCPU default.


def check_runtime(runtime: str, flag: str = "--runtime") -> str:
    """One line naming the choices, for the CLI (exit 2) and the stack alike."""
    if runtime not in RUNTIMES:
        raise InputError(f"unknown {flag} {runtime!r}: choose {' or '.join(RUNTIMES)}")
    return runtime


PoolerSettings = contract.PoolerKnobs
"""The in-EE PgBouncer, as the layer's env contract sets it on every arm's function: the
contract's own knobs and defaults (DEFAULT_POOL_SIZE 20 per db/user, as PgBouncer's)."""


@dataclass(frozen=True)
class StandardSettings:
    """Standard Lambda: one request per EE."""

    concurrency_limit: int = 1000  # the account's concurrent executions quota
    idle_timeout_s: float = 300.0  # Lambda reaps idle EEs after some minutes (not documented)


@dataclass(frozen=True)
class ManagedSettings:
    """Lambda Managed Instances on a capacity provider."""

    slots_per_ee: int = 16  # PerExecutionEnvironmentMaxConcurrency (Python: 16 per vCPU)
    min_ees: int = 3  # FunctionScalingConfig MinExecutionEnvironments (default 3)
    max_ees: int = 30  # FunctionScalingConfig MaxExecutionEnvironments
    target_utilisation: float = 0.7  # the scaler's target (LambdaCapacityProviderAverageCPU...)
    scale_delay_s: float = 2.0  # how long the asynchronous scaler takes to react
    scale_down_after_s: float = 60.0  # idle time before an EE above the minimum is removed


@dataclass(frozen=True)
class ProxySettings:
    """The RDS Proxy stand-in: one PgBouncer shared by all of the arm's standard EEs."""

    pool_size: int = 20  # RDS Proxy MaxConnectionsPercent, as a connection count


@dataclass(frozen=True)
class StackSettings:
    """The whole local stack: which arms run, their knobs, and where the run's files go."""

    run_dir: Path
    arms: tuple[str, ...] = DEFAULT_ARMS
    standard: StandardSettings = field(default_factory=StandardSettings)
    managed: ManagedSettings = field(default_factory=ManagedSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    pooler: PoolerSettings = field(default_factory=PoolerSettings)
    max_connections: int = 2000  # Aurora max_connections (capped at 2000 when min ACU <= 0.5)
    gateway_port: int = 0  # 0: a free port
    # The handler's CONNECT_TIMEOUT. AWS keeps the handler's 5 s; here every EE shares two
    # cores, so a burst of logins can queue for CPU longer than any EE on AWS would wait.
    function_connect_timeout_s: int = 30
    sample_interval_s: float = 1.0
    stack_name: str = "PoolbenchLocal"
    samples_file: Path | None = None  # default: <run_dir>/samples.jsonl
    # Standard EEs' runtimes and every EE's extension launcher forked from warm parents
    # (local/zygote.py) rather than each a fresh Python: the same code, a fraction of the CPU.
    zygote: bool = True
    # EE inits at once per core, over all arms (local/function_models.py INIT_SLOTS_PER_CORE)
    init_slots_per_core: int = 8
    runtime: str = "python"  # the function under test on every arm: python or nodejs

    def __post_init__(self) -> None:
        # Every path here crosses a process boundary (PgBouncer, the runtimes, the zygote that
        # changes directory before opening a log): relative ones would land somewhere else.
        object.__setattr__(self, "run_dir", self.run_dir.absolute())
        if self.samples_file is not None:
            object.__setattr__(self, "samples_file", self.samples_file.absolute())

    def validate(self) -> StackSettings:
        check_runtime(self.runtime)
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise InputError(f"unknown arm {unknown[0]!r}: choose from {', '.join(ARMS)}")
        if not self.arms:
            raise InputError(f"no arms: give --arms standard,managed (or any of {','.join(ARMS)})")
        if len(set(self.arms)) != len(self.arms):
            raise InputError("an arm is named twice in --arms")
        checks: list[tuple[bool, str]] = [
            (self.managed.slots_per_ee >= 1, "--slots-per-ee must be at least 1"),
            (self.managed.min_ees >= 1, "--min-ees must be at least 1"),
            (
                self.managed.max_ees >= self.managed.min_ees,
                f"--min-ees {self.managed.min_ees} is above --max-ees {self.managed.max_ees}",
            ),
            (
                0 < self.managed.target_utilisation <= 1,
                "--target-utilisation must be in (0, 1]",
            ),
            (self.managed.scale_delay_s >= 0, "--scale-delay must not be negative"),
            (self.standard.concurrency_limit >= 1, "--concurrency-limit must be at least 1"),
            (self.standard.idle_timeout_s > 0, "--idle-timeout must be positive"),
            (self.pooler.default_pool_size >= 1, "--pool-size must be at least 1"),
            (self.proxy.pool_size >= 1, "--proxy-pool-size must be at least 1"),
            (self.max_connections >= 10, "--max-connections must be at least 10"),
            (self.sample_interval_s > 0, "the sample interval must be positive"),
            (self.init_slots_per_core >= 1, "init slots per core must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        return self
