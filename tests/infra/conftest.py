"""Synthesize the CDK app once per session (per variant); every infra test reads those results.

No Docker (``bundle=false``), no AWS (no account or region: the stack is environment-agnostic).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions import contract
from local.processes import SESSION_ENV

# The jsii kernel (a node process) starts on first import of aws_cdk and lives as long as this
# interpreter by design; keep it out of the suite's "no process outlives the tests" accounting.
_session = os.environ.pop(SESSION_ENV, None)
# No JSII_SILENCE_WARNING_*: jsii runs on the project's Node 24 (tests/conftest.py), which it
# supports; a banner would mean the machine's older Node is in use.
try:
    import aws_cdk
    from aws_cdk.assertions import Template
finally:
    if _session is not None:
        os.environ[SESSION_ENV] = _session

from infra.app import build_app  # noqa: E402
from infra.stack import PoolbenchStack  # noqa: E402

pytestmark = pytest.mark.infra

NO_DOCKER: dict[str, Any] = {"bundle": False}


@dataclass(frozen=True)
class Synth:
    """One synthesized variant: the stack object, its template and the cloud assembly folder."""

    stack: PoolbenchStack
    template: Template
    raw: dict[str, Any]
    outdir: Path

    def resources(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        """Logical ID -> resource of one CloudFormation type."""
        return {k: v for k, v in self.raw["Resources"].items() if v["Type"] == cfn_type}

    def logical_id(self, construct: aws_cdk.Resource | aws_cdk.CfnElement) -> str:
        """The logical ID of an L2 (its default child) or L1 construct."""
        node = construct
        if isinstance(construct, aws_cdk.Resource):
            child = construct.node.default_child
            assert isinstance(child, aws_cdk.CfnElement)
            node = child
        assert isinstance(node, aws_cdk.CfnElement)
        return self.stack.get_logical_id(node)


def synthesize(context: dict[str, Any], outdir: Path) -> Synth:
    """Synthesize with ``context`` over the no-Docker defaults, into ``outdir``."""
    app, stack = build_app({**NO_DOCKER, **context}, outdir=str(outdir))
    assembly = app.synth()
    raw = assembly.get_stack_by_name(stack.stack_name).template
    return Synth(stack=stack, template=Template.from_json(raw), raw=raw, outdir=outdir)


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The stack as cdk.json's defaults build it: standard + managed arms."""
    return synthesize({}, tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def proxy_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """All three arms, including the RDS Proxy one."""
    return synthesize({"arms": "standard,managed,proxy"}, tmp_path_factory.mktemp("cdk-proxy"))


@pytest.fixture(scope="session")
def nodejs_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Every arm with the Node.js function under test (-c runtime=nodejs)."""
    return synthesize(
        {"arms": "standard,managed,proxy,direct,managed-direct", "runtime": "nodejs"},
        tmp_path_factory.mktemp("cdk-nodejs"),
    )


ISOLATED_STACK_NAME = "Poolbench-Isolated--B"
"""A second stack name, one RDS would not take as it is (upper case, a double hyphen)."""


@pytest.fixture(scope="session")
def isolated_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The other network mode (no NAT, AWS APIs through endpoints only), all arms, a 2nd name."""
    return synthesize(
        {"natGateways": 0, "arms": ",".join(contract.ARMS), "stackName": ISOLATED_STACK_NAME},
        tmp_path_factory.mktemp("cdk-isolated"),
    )


@pytest.fixture(scope="session")
def direct_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Only the arms without a pooler: no layer at all."""
    return synthesize({"arms": "direct,managed-direct"}, tmp_path_factory.mktemp("cdk-direct"))


@pytest.fixture(scope="session", params=["default", "proxy", "isolated", "direct", "nodejs"])
def any_synth(request: pytest.FixtureRequest) -> Iterator[Synth]:
    """Each variant in turn, for properties that must hold whatever the arms and network."""
    yield request.getfixturevalue(f"{request.param}_synth")


def references(value: Any) -> set[str]:
    """Every logical ID a JSON value names through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if isinstance(inner, list):
                    found |= references(inner[1:])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


def created_before(raw: dict[str, Any], start: str) -> set[str]:
    """Every resource CloudFormation must finish before ``start``: DependsOn, Ref and GetAtt,
    followed transitively (what the template's own dependency graph guarantees)."""
    resources = raw["Resources"]
    seen: set[str] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        resource = resources[current]
        depends = resource.get("DependsOn", [])
        edges = {depends} if isinstance(depends, str) else set(depends)
        edges |= references({k: v for k, v in resource.items() if k != "DependsOn"})
        for edge in edges & resources.keys():
            if edge not in seen:
                seen.add(edge)
                todo.append(edge)
    return seen


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
