"""Context -> Settings: coercion of CLI strings, validation messages, cdk.json completeness."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra.settings import (
    LMI_MEMORY_HEADROOM,
    POOLER_MEMORY_MIB,
    WORKER_MEMORY_MIB,
    Settings,
    SettingsError,
    defaults_as_context,
)
from loadtest.presets import PRESETS

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
SEED_USERS = PRESETS["seed"].users
"""The seed preset's users per arm, all arriving at once."""


def test_cdk_json_documents_every_knob_with_its_default() -> None:
    cdk = json.loads((REPO / "cdk.json").read_text())
    assert cdk["app"] == "uv run --frozen python -m infra.app"
    assert cdk["context"] == defaults_as_context()


def test_cli_strings_are_coerced_like_json_values() -> None:
    raw = {
        "arms": "standard, managed,proxy",
        "memoryMb": "4096",
        "minAcu": "1",
        "maxAcu": "16",
        "bundle": "false",
        "managedInstanceTypes": "m8g.large,c7g.xlarge",
    }
    s = Settings.from_context(raw.get)
    assert s.arms == ("standard", "managed", "proxy")
    assert s.memory_mb == 4096
    assert (s.min_acu, s.max_acu) == (1.0, 16.0)
    assert s.bundle is False
    assert s.managed_instance_types == ("m8g.large", "c7g.xlarge")
    assert s.proxy and s.managed
    assert s.managed_vcpus == 2


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"memoryMb": "abc"}, "context 'memoryMb'='abc': expected int; set -c memoryMb=<int>"),
        ({"arms": ""}, "context 'arms'=: at least one arm is needed"),
        ({"arms": "managed,managed"}, "an arm is listed twice"),
        ({"managedInstanceTypes": "m7i.large"}, "'m7i.large' is not an arm64 (Graviton) type"),
        ({"perEnvironmentMaxConcurrency": "65"}, "must be 1..64 (64 per vCPU, 1 vCPU"),
        ({"memoryGibPerVcpu": "3"}, "context 'memoryGibPerVcpu'=3: must be one of 2, 4, 8"),
        ({"memoryGibPerVcpu": "4"}, "needs >= 1 vCPU, i.e. >= 4096 MB"),
        ({"minExecutionEnvironments": "7"}, "<= maxExecutionEnvironments (6)"),
        ({"minAcu": "0.3"}, "context 'minAcu'=0.3: ACU is 0..256 in steps of 0.5"),
        ({"postgresVersion": "16.4"}, "Aurora PostgreSQL 17 versions known here"),
        ({"natGateways": "3"}, "must be 0..maxAzs (2)"),
        ({"logRetentionDays": "10"}, "not a CloudWatch Logs retention"),
        (
            {"minExecutionEnvironments": "0"},
            "context 'minExecutionEnvironments'=0: Lambda accepts a minimum of 0 only when "
            "maxExecutionEnvironments is 0 too",
        ),
        ({"maxVcpuCount": "8"}, "context 'maxVcpuCount'=8: must be 12..15000"),
        (
            {"minExecutionEnvironments": "5", "memoryMb": "8192", "maxExecutionEnvironments": "9"},
            "context 'maxVcpuCount'=16: 5 minimum execution environments x 4 vCPU need 20 vCPUs",
        ),
        ({"managedInstanceTypes": "m8g.large,t4g.large"}, "'t4g.large' is burstable (t*)"),
        ({"managedInstanceTypes": "x2gd.large"}, "run C, M and R families, not 'x'"),
        ({"managedInstanceTypes": "c8g.medium"}, "'c8g.medium': Managed Instances use .large"),
        (
            {"perEnvironmentMaxConcurrency": "64"},
            f"64 workers x {WORKER_MEMORY_MIB} MiB + {POOLER_MEMORY_MIB} MiB pooler = "
            f"{64 * WORKER_MEMORY_MIB + POOLER_MEMORY_MIB} MiB exceed 80% of the 2048 MiB",
        ),
    ],
)
def test_bad_values_name_the_key_and_a_fix(context: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_context(context.get)
    assert message in str(info.value)
    assert "; set -c " in str(info.value)


def test_small_memory_is_fine_without_the_managed_arm() -> None:
    s = Settings.from_context({"arms": "standard", "memoryMb": "1024"}.get)
    assert s.memory_mb == 1024 and not s.managed


def test_pooler_knobs_become_the_extension_environment() -> None:
    s = Settings(default_pool_size=5, min_pool_size=1, pool_mode="session")
    assert s.pooler_environment() == {
        "POOL_MODE": "session",
        "DEFAULT_POOL_SIZE": "5",
        "MIN_POOL_SIZE": "1",
        "SERVER_IDLE_TIMEOUT": "600",
        "MAX_CLIENT_CONN": "1000",
    }


def test_zero_environments_are_accepted_when_the_maximum_is_zero_too() -> None:
    s = Settings.from_context(
        {"minExecutionEnvironments": "0", "maxExecutionEnvironments": "0"}.get
    )
    assert (s.min_execution_environments, s.max_execution_environments) == (0, 0)


def test_the_memory_refusal_names_fixes_that_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a per-EE concurrency whose workers cannot fit a 2 GiB environment
    context = {"perEnvironmentMaxConcurrency": "48"}
    with pytest.raises(SettingsError) as info:
        Settings.from_context(context.get)
    message = str(info.value)
    # Then each fix it names, applied as written, is accepted
    fixes = re.findall(r"-c (\w+)=(\d+)", message.split("; set ", 1)[1])
    assert [k for k, _ in fixes] == ["perEnvironmentMaxConcurrency", "memoryMb"]
    fits = (int(2048 * LMI_MEMORY_HEADROOM) - POOLER_MEMORY_MIB) // WORKER_MEMORY_MIB
    lowered = dict([fixes[0]])
    assert Settings.from_context(lowered.get).per_environment_max_concurrency == fits
    bigger = {**context, **dict([fixes[1]])}
    assert Settings.from_context(bigger.get).memory_mb > 2048
    # ... and the fix is tight: one slot more than offered does not fit
    with pytest.raises(SettingsError):
        Settings.from_context({"perEnvironmentMaxConcurrency": str(fits + 1)}.get)


def test_the_seed_capacity_in_docs_fits_and_holds_the_seed_users() -> None:
    # The deploy command docs/aws.md gives for the seed preset (100 users arriving at once)
    docs = (REPO / "docs" / "aws.md").read_text()
    block = docs.split("<!-- seed-deploy -->", 1)[1].split("```", 2)[1]
    context = dict(re.findall(r"-c (\w+)=([\w,.]+)", block))
    s = Settings.from_context(context.get)
    assert s.managed
    assert s.min_execution_environments * s.per_environment_max_concurrency >= SEED_USERS
    assert s.managed_memory_needed_mib <= s.memory_mb * LMI_MEMORY_HEADROOM


def test_default_capacity_is_what_the_docs_say_it_holds() -> None:
    s = Settings()
    assert s.min_execution_environments * s.per_environment_max_concurrency == 48
    assert s.managed_memory_needed_mib == 16 * WORKER_MEMORY_MIB + POOLER_MEMORY_MIB
