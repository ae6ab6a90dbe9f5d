"""Static checks on the synthesized app: cfn-lint, cdk-nag, the pinned CDK CLI, bad context."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

import infra.nag
import infra.stack
from functions import contract
from infra.app import build_app
from infra.nag import FRAMEWORK_INVOKE_REASON, REASONS, framework_finding
from infra.settings import SettingsError
from local.processes import SESSION_ENV
from tests.infra.conftest import NO_DOCKER, Synth

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
CDK = REPO / "node_modules" / ".bin" / "cdk"


def test_cfn_lint_passes_on_every_variant(any_synth: Synth) -> None:
    template = any_synth.outdir / f"{any_synth.stack.stack_name}.template.json"
    # W3005 (a DependsOn that a Ref already implies) is how CDK's L2s write every function's
    # role dependency; it is redundant, not wrong. Every error and every other warning counts.
    args = ManualArgs(regions=["us-east-1", "eu-west-1"], ignore_checks=["W3005"])
    matches = lint_file(template, args)
    assert [str(m) for m in matches] == []


def test_cdk_nag_leaves_no_unacknowledged_finding(any_synth: Synth) -> None:
    # Synthesis would have raised on an unacknowledged error; the report must also be empty
    report = json.loads((any_synth.outdir / "validation-report.json").read_text())
    violations = [v for p in report["pluginReports"] for v in p["violations"]]
    assert violations == []


def _acknowledged(outdir: Path, stack_name: str) -> dict[str, str]:
    """Every acknowledgment recorded in the assembly: '<path> <rule>' -> reason."""
    metadata = json.loads((outdir / f"{stack_name}.metadata.json").read_text())
    out = {}
    for path, entries in metadata.items():
        for entry in entries:
            if entry["type"] == "aws:cdk:acknowledged-rules":
                for rule, reason in entry["data"].items():
                    out[f"{path} {rule}"] = reason
    return out


def test_every_acknowledgment_carries_a_reason(any_synth: Synth) -> None:
    acks = _acknowledged(any_synth.outdir, any_synth.stack.stack_name)
    assert acks
    for key, reason in acks.items():
        assert len(reason) >= 40, f"{key}: reason too thin: {reason!r}"


def test_nag_runs_and_every_acknowledgment_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same app with no acknowledgments at all
    monkeypatch.setattr(infra.nag, "acknowledge", lambda *args, **kwargs: None)
    every_arm = ",".join(contract.ARMS)
    app, stack = build_app({**NO_DOCKER, "arms": every_arm}, outdir=str(tmp_path))
    # When it is synthesized, cdk-nag stops it ...
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    found = {
        v["ruleName"].removeprefix("AwsSolutions::")
        for p in report["pluginReports"]
        for v in p["violations"]
    }
    # ... and what it finds is exactly what nag.py reviewed: nothing unreviewed, nothing stale
    reviewed = set(REASONS) | {framework_finding(stack.database.roles_setup_function)}
    assert found == reviewed
    assert FRAMEWORK_INVOKE_REASON


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop(SESSION_ENV, None)  # the CLI's jsii kernel is a child of the app; it exits with it
    env["CDK_DISABLE_VERSION_CHECK"] = "1"
    # No JSII_SILENCE_WARNING_*: the CLI and jsii run on the project's Node 24 (tests/conftest.py
    # puts node_modules/.bin first on PATH), which jsii supports, so it has nothing to warn of.
    return env


def run_cdk(*args: str, outdir: Path) -> subprocess.CompletedProcess[str]:
    """The pinned CLI (package-lock.json) from the repository root, no Docker, no account."""
    if not CDK.exists() or shutil.which("node") is None:
        pytest.fail("the pinned CDK CLI is missing: run scripts/bootstrap")
    return subprocess.run(
        [
            str(CDK),
            "synth",
            "--no-notices",
            "--quiet",
            "-o",
            str(outdir),
            "-c",
            "bundle=false",
            *args,
        ],
        cwd=REPO,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_pinned_cdk_cli_synthesizes_the_app(tmp_path: Path) -> None:
    result = run_cdk(outdir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # jsii's banner for a Node it does not support ("Node 20 is end-of-life and not supported")
    assert "not supported" not in result.stderr, result.stderr[-2000:]
    template: dict[str, Any] = json.loads((tmp_path / "PoolbenchStack.template.json").read_text())
    types = [r["Type"] for r in template["Resources"].values()]
    assert types.count("AWS::Lambda::CapacityProvider") == 1
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    stack = manifest["artifacts"]["PoolbenchStack"]
    # Environment-agnostic: deployable to whatever account/region the CLI is pointed at
    assert stack["environment"] == "aws://unknown-account/unknown-region"


BAD_CONTEXT = [
    pytest.param(
        {"memoryMb": "1024"},
        "context 'memoryMb'=1024: Lambda Managed Instances needs >= 2048 MB",
        id="managed-memory-below-2048",
    ),
    pytest.param(
        {"arms": "standard,turbo"},
        "context 'arms'=standard,turbo: unknown arm 'turbo', arms are "
        "standard, managed, proxy, direct, managed-direct",
        id="unknown-arm",
    ),
    pytest.param(
        {"minAcu": "8", "maxAcu": "4"},
        "context 'minAcu'=8.0: min ACU is above maxAcu (4)",
        id="min-acu-above-max",
    ),
    pytest.param(
        # The CDK construct itself throws for this one (a jsii stack trace before the check)
        {"maxVcpuCount": "8"},
        "context 'maxVcpuCount'=8: must be 12..15000 (the CDK CapacityProvider refuses fewer",
        id="max-vcpu-below-cdk-minimum",
    ),
]


@pytest.mark.parametrize(("context", "message"), BAD_CONTEXT)
def test_bad_context_fails_with_one_clear_message(context: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        build_app({**NO_DOCKER, **context})
    assert str(info.value).startswith(message)
    assert "; set -c " in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("context", "message"), BAD_CONTEXT)
def test_bad_context_fails_the_cli_synth(
    context: dict[str, str], message: str, tmp_path: Path
) -> None:
    args = [a for key, value in context.items() for a in ("-c", f"{key}={value}")]
    result = run_cdk(*args, outdir=tmp_path)
    assert result.returncode != 0
    assert f"poolbench infra: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "PoolbenchStack.template.json").exists()


@pytest.mark.parametrize(("context", "message"), BAD_CONTEXT)
def test_bad_context_makes_the_app_exit_2_with_one_line(
    context: dict[str, str], message: str, tmp_path: Path
) -> None:
    # Given the app as the CLI runs it (context in CDK_CONTEXT_JSON, as cdk synth passes it)
    env = {
        **_cli_env(),
        "CDK_CONTEXT_JSON": json.dumps({**NO_DOCKER, **context}),
        "CDK_OUTDIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "infra.app"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    # Then it exits 2 with exactly one line naming the key and the fix (besides jsii's banner
    # about this machine's Node 20, which the runtime prints before any app code runs)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [
        line for line in result.stderr.splitlines() if line.strip() and not line.startswith("b'!!")
    ]
    assert lines == [lines[-1]] and lines[0].startswith(f"poolbench infra: {message}"), lines
    assert "; set -c " in lines[0]
