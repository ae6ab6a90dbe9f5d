"""What the layer's Docker build is given: build_layer.sh, executed up to its architecture check
(this machine is not arm64), with the environment infra/pooler_layer.py passes it."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

import pytest

from infra.pooler_layer import build_environment

pytestmark = pytest.mark.infra

BUILD = Path(__file__).resolve().parents[2] / "functions" / "pooler" / "build_layer.sh"


def run_build(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_build_gets_the_locked_boto3_and_botocore() -> None:
    env = build_environment()
    assert env["BOTO3_VERSION"] == importlib.metadata.version("boto3")
    assert env["BOTOCORE_VERSION"] == importlib.metadata.version("botocore")
    result = run_build(env)
    # past every variable it needs, it stops only because this machine is not arm64
    assert result.returncode == 1
    assert "the layer must be built on arm64" in result.stderr, result.stderr


@pytest.mark.parametrize("missing", ["BOTO3_VERSION", "BOTOCORE_VERSION"])
def test_the_build_refuses_to_guess_a_boto3_version(missing: str) -> None:
    env = {k: v for k, v in build_environment().items() if k != missing}
    result = run_build(env)
    assert result.returncode == 1
    assert f"{missing}: set {missing}" in result.stderr
