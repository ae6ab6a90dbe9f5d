"""-c runtime=nodejs: every arm runs the Node.js function (nodejs24.x, arm64, pg), the checks that
exist for Python cover it, and its bundling step runs for real (npm ci --omit=dev, no Docker)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Annotations, Match

from functions import contract
from infra.assets import NODE_FUNCTION_DIR, bundle_node_function
from infra.functions import check_managed_function
from infra.settings import Settings, SettingsError
from tests.infra.conftest import Synth
from tests.infra.test_stack import arm_functions

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
NODE = REPO / "node_modules" / ".bin" / "node"


def test_every_arm_runs_the_nodejs_function(nodejs_synth: Synth) -> None:
    functions = arm_functions(nodejs_synth)
    assert set(functions) == set(contract.ARMS)
    for arm, fn in functions.items():
        props = fn["Properties"]
        assert (props["Runtime"], props["Handler"]) == ("nodejs24.x", "index.handler"), arm
        assert props["Architectures"] == ["arm64"], arm
        # the same layer and env contract as the Python function: the socket, or the database
        env = props["Environment"]["Variables"]
        if contract.arm(arm).has_layer:
            assert env["POOLER_PORT"] == "6432" and "CONNECT_DIRECT" not in env, arm
        else:
            assert env["CONNECT_DIRECT"] == "1" and "Layers" not in props, arm
    (layer,) = nodejs_synth.resources("AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13", "nodejs24.x"]
    # the probe is the harness's own function, not the one under test: it stays Python
    probe = nodejs_synth.raw["Resources"][
        nodejs_synth.logical_id(nodejs_synth.stack.probe.function)
    ]
    assert probe["Properties"]["Runtime"] == "python3.13"
    assert nodejs_synth.raw["Outputs"]["Runtime"]["Value"] == "nodejs"


def test_synth_has_no_warning_for_the_node_arms(nodejs_synth: Synth) -> None:
    """The layer brings the Python its extension runs on (tests/unit/test_layer.py runs it with
    no other Python), so a Node.js arm with the layer has nothing left to warn about."""
    warnings = Annotations.from_stack(nodejs_synth.stack).find_warning("*", Match.any_value())
    assert [(w.id, w.entry.data) for w in warnings] == []


def test_managed_node_arms_get_a_libuv_pool_their_polls_cannot_fill(
    nodejs_synth: Synth, default_synth: Synth
) -> None:
    """One vCPU: aws-lambda-ric's 8 worker threads each hold a pool thread in /next, plus
    libuv's default 4 for SCRAM and DNS (docs/nodejs.md). Standard EEs and Python: unset."""
    for synth, runtime in ((nodejs_synth, "nodejs"), (default_synth, "python")):
        for arm, fn in arm_functions(synth).items():
            env = fn["Properties"]["Environment"]["Variables"]
            expected = "12" if contract.arm(arm).managed and runtime == "nodejs" else None
            assert env.get("UV_THREADPOOL_SIZE") == expected, (runtime, arm)


def test_managed_arm_gets_nodes_default_of_64_per_vcpu(nodejs_synth: Synth) -> None:
    for arm in ("managed", "managed-direct"):
        props = arm_functions(nodejs_synth)[arm]["Properties"]
        lmi = props["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
        # 2048 MB at 2 GiB per vCPU is one vCPU: Node's 64 (Python's default gives 16)
        assert lmi["PerExecutionEnvironmentMaxConcurrency"] == 64, arm
        assert props["MemorySize"] >= 2048, arm
    assert nodejs_synth.raw["Outputs"]["ManagedPerEnvironmentMaxConcurrency"]["Value"] == "64"
    assert Settings().per_environment_max_concurrency == 16


def test_memory_check_counts_a_node_slot_as_a_share_of_one_process() -> None:
    # Python: a process per slot, 64 of them do not fit 2048 MB; Node: one process, they do
    with pytest.raises(SettingsError, match="64 workers x 64 MiB"):
        Settings(per_environment_max_concurrency=64)
    node = Settings(runtime="nodejs", per_environment_max_concurrency=64)
    assert node.managed_memory_needed_mib == 192 + 64 * 1 + 160
    # ... and at 4 vCPUs (8192 MB) Node's default is 256 slots, still within the EE
    assert Settings(runtime="nodejs", memory_mb=8192).per_environment_max_concurrency == 256


def test_unknown_runtime_names_the_choices() -> None:
    with pytest.raises(SettingsError, match="context 'runtime'=ruby: must be python or nodejs"):
        Settings.from_context({"runtime": "ruby"}.get)


def test_managed_check_refuses_a_runtime_managed_instances_do_not_run() -> None:
    stack = Stack(App(), "Check")
    fn = lambda_.Function(
        stack,
        "Old",
        runtime=lambda_.Runtime.NODEJS_20_X,
        architecture=lambda_.Architecture.ARM_64,
        handler="index.handler",
        memory_size=2048,
        code=lambda_.Code.from_inline("exports.handler = async () => 1"),
    )
    with pytest.raises(ValueError, match=r"runtime nodejs20\.x"):
        check_managed_function(fn, Settings(runtime="nodejs"))


def test_bundling_installs_pg_from_the_lockfile_and_the_handler_loads(tmp_path: Path) -> None:
    """The asset's local bundling step itself, into a folder: no Docker, no runtime client."""
    out = tmp_path / "asset"
    bundle_node_function(out)
    lock = json.loads((NODE_FUNCTION_DIR / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/pg"]["version"]
    installed = json.loads((out / "node_modules" / "pg" / "package.json").read_text())
    assert installed["version"] == pinned == "8.16.3"
    assert not (out / "node_modules" / "aws-lambda-ric").exists(), "a devDependency shipped"
    assert sorted(p.name for p in out.iterdir()) == [
        "index.mjs",
        "node_modules",
        "package-lock.json",
        "package.json",
    ]
    # The bundled handler imports pg from the bundle and parses a request as the Python one does
    probe = (
        "const m = await import(process.argv[1]);"
        "console.log(JSON.stringify(m.paramsFromEvent({queryStringParameters: {sleep_ms: '7'}})))"
    )
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
    done = subprocess.run(
        [str(NODE), "--input-type=module", "-e", probe, str(out / "index.mjs")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sleep_ms": 7, "queries": 2, "hold": True}
