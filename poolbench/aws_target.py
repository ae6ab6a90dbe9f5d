"""What `run --target aws` checks in the outputs file before any load, in one place.

Every key the run, the probe and the CloudWatch collector will read is checked here, so a
partial or wrong outputs file is one line and exit 2 before a single request, not a failure
after a ten-minute load. The managed arm's capacity is compared with the scenario too: a
comparison measured while Lambda throttles for lack of execution environments would be a
measurement of under-provisioning, not of pooling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from functions import contract
from input_errors import InputError
from loadtest.presets import Scenario
from loadtest.target import Target

# Keys every AWS run reads: the probe (DB connections per arm), the collector (cluster, API),
# the stack's Region (every client), the function timeout (the longest sleep a request may ask).
COMMON_KEYS = (
    "Region",
    "ProbeFunctionName",
    "DbClusterIdentifier",
    "ApiName",
    "ApiStage",
    "FunctionTimeoutSeconds",
)
MANAGED_KEYS = (
    "CapacityProviderName",
    "ManagedPerEnvironmentMaxConcurrency",
    "ManagedMinExecutionEnvironments",
    "ManagedMaxExecutionEnvironments",
)
# Outputs added after the first stacks were deployed: missing ones mean an older stack.
NEWER_KEYS = frozenset({"FunctionTimeoutSeconds", *MANAGED_KEYS[1:]})
# A request's sleep must end this long before the function's timeout (init, queries, reply).
TIMEOUT_MARGIN_MS = 1000
# Lambda Managed Instances: at most 64 concurrent requests per vCPU of an environment.
LMI_MAX_PER_VCPU = 64


@dataclass(frozen=True)
class ManagedCapacity:
    per_ee: int
    min_ees: int
    max_ees: int

    @property
    def slots_at_start(self) -> int:
        return self.per_ee * self.min_ees


def required_keys(arms: Sequence[str]) -> list[str]:
    keys = [*COMMON_KEYS, *(contract.function_name_output(arm) for arm in arms)]
    if any(contract.arm(arm).managed for arm in arms):
        keys += MANAGED_KEYS
    return keys


def check_outputs(target: Target, arms: Sequence[str]) -> None:
    """Refuses an outputs file the AWS run cannot use, naming what is wrong and the fix."""
    where = f"outputs file {target.path}"
    source = target.outputs.get("MetricsSource", "")
    if source == "local" or target.outputs.get("Region") == "local":
        raise InputError(
            f"{where} was written by `poolbench local up` (MetricsSource=local): --target aws "
            "needs the file `cdk deploy --outputs-file` writes; for the local stack use "
            "--target local"
        )
    missing = [key for key in required_keys(arms) if not target.outputs.get(key, "").strip()]
    if missing:
        newer = [key for key in missing if key in NEWER_KEYS]
        why = (
            "the stack predates these outputs"
            if len(newer) == len(missing)
            else "the file is partial or from another stack"
        )
        raise InputError(
            f"{where}: stack {target.stack!r} lacks {', '.join(missing)}, which the run reads "
            f"({why}): redeploy with `cdk deploy --outputs-file {target.path}`"
        )
    for key in ("FunctionTimeoutSeconds", *MANAGED_KEYS[1:]):
        if key in target.outputs and not _is_int(target.outputs[key]):
            raise InputError(f"{where}: {key} is {target.outputs[key]!r}, not a whole number")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def managed_capacity(target: Target) -> ManagedCapacity:
    o = target.outputs
    return ManagedCapacity(
        per_ee=int(o["ManagedPerEnvironmentMaxConcurrency"]),
        min_ees=int(o["ManagedMinExecutionEnvironments"]),
        max_ees=int(o["ManagedMaxExecutionEnvironments"]),
    )


def users_at_once(scenario: Scenario) -> int:
    """Users per arm that arrive before Lambda's scaler can react: all of them, unless the
    scenario ramps (then its first step). Managed Instances scale asynchronously, over
    minutes, so a spawn rate of a few seconds is still 'at once' for them."""
    return scenario.ramp_start if scenario.ramp_interval_s else scenario.users


def check_managed_capacity(target: Target, scenario: Scenario, allow_throttles: bool) -> None:
    """min EEs x per-EE concurrency must hold the users that arrive at once, else refuse,
    naming the -c settings that fit."""
    managed = [arm for arm in scenario.arms if contract.arm(arm).managed]
    if not managed or allow_throttles:
        return
    capacity = managed_capacity(target)
    users = users_at_once(scenario)
    if capacity.slots_at_start >= users:
        return
    need_ees = math.ceil(users / max(capacity.per_ee, 1))
    need_per_ee = math.ceil(users / max(capacity.min_ees, 1))
    raise InputError(
        f"the {' and '.join(managed)} arm starts with {capacity.min_ees} EEs x "
        f"{capacity.per_ee} requests = "
        f"{capacity.slots_at_start} slots for {users} users arriving at once, so Lambda would "
        f"throttle: redeploy with -c minExecutionEnvironments={need_ees} "
        f"-c maxExecutionEnvironments={max(need_ees, capacity.max_ees)} (or -c "
        f"perEnvironmentMaxConcurrency={need_per_ee}, at most {LMI_MAX_PER_VCPU} per vCPU), "
        "or pass --allow-throttles to measure it anyway"
    )


def check_sleep_fits(sleep_ms: int, timeout_s: float, where: str, fix: str) -> None:
    """A request's sleep must end before the function's timeout (with a margin), or every
    request would end in a timeout (a 504 on API Gateway) counted as a failure."""
    limit_ms = int(timeout_s * 1000) - TIMEOUT_MARGIN_MS
    if sleep_ms > limit_ms:
        raise InputError(
            f"--sleep-ms {sleep_ms} exceeds {where}'s function timeout of {timeout_s:g} s minus "
            f"a {TIMEOUT_MARGIN_MS} ms margin ({limit_ms} ms): lower --sleep-ms, or {fix}"
        )


def check_aws_run(target: Target, scenario: Scenario, allow_throttles: bool) -> None:
    """Every outputs-file check of an AWS run, in the order a user would fix them."""
    check_outputs(target, scenario.arms)
    check_sleep_fits(
        scenario.sleep_ms,
        float(target.outputs["FunctionTimeoutSeconds"]),
        f"stack {target.stack}",
        "redeploy with -c timeoutSeconds=N (API Gateway ends requests at 29 s)",
    )
    check_managed_capacity(target, scenario, allow_throttles)
