"""Context -> Settings: coercion of CLI strings, validation messages, cdk.json completeness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.settings import Settings, SettingsError, defaults_as_context

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]


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
