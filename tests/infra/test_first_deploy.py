"""What the first ``cdk deploy`` and its first invoke depend on, read off the template (#9, #16).

The dependency checks walk the template's own graph (DependsOn, Ref, GetAtt, Sub) the way
CloudFormation orders creation: a resource reachable from a function is finished before that
function is created, so before a Managed Instances publish starts its execution environments.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from functions import contract
from infra.database import PROXY_NAME_MAX, RDS_NAME_MAX, cluster_identifier, proxy_name
from infra.stack import UNBUNDLED_MESSAGE
from tests.infra.conftest import ISOLATED_STACK_NAME, Synth, created_before

pytestmark = pytest.mark.infra


def _group(synth: Synth, construct: Any) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [synth.logical_id(construct), "GroupId"]}


def _ingress(synth: Synth, group: Any, source: Any) -> set[str]:
    """Logical IDs of the ingress rules that let ``source`` into ``group``."""
    return {
        k
        for k, v in synth.resources("AWS::EC2::SecurityGroupIngress").items()
        if v["Properties"]["GroupId"] == _group(synth, group)
        and v["Properties"].get("SourceSecurityGroupId") == _group(synth, source)
    }


def _egress(synth: Synth, group: Any) -> set[str]:
    """Logical IDs of the egress rules of ``group``."""
    return {
        k
        for k, v in synth.resources("AWS::EC2::SecurityGroupEgress").items()
        if v["Properties"]["GroupId"] == _group(synth, group)
    }


def test_every_arm_function_is_created_after_what_its_init_needs(any_synth: Synth) -> None:
    stack = any_synth.stack
    network, database = stack.network, stack.database
    writers = set(any_synth.resources("AWS::RDS::DBInstance"))
    (roles,) = any_synth.resources("Custom::PoolbenchDbRoles")
    endpoints = set(any_synth.resources("AWS::EC2::VPCEndpoint"))
    nat_routes = {
        k
        for k, v in any_synth.resources("AWS::EC2::Route").items()
        if "NatGatewayId" in v["Properties"]
    }
    assert writers and endpoints
    assert bool(nat_routes) == (not stack.settings.isolated)

    def client_group(arm: str) -> object:
        """The group an arm's connections leave from: its function's, or the instances'."""
        spec = contract.arm(arm)
        if spec.managed:
            return network.capacity_provider_sg
        if spec.pooler is contract.Pooler.SHARED:
            return stack.arms.proxy_arm_sg
        return network.functions_sg  # standard and direct

    for arm, fn in stack.arms.functions.items():
        # Given the function (for managed: with its $LATEST.PUBLISHED and capacity config)
        before = created_before(any_synth.raw, any_synth.logical_id(fn))
        group = client_group(arm)
        # Then the writer, the arm's login role, every endpoint and the NAT route come first
        must = {"writer": writers, "roles": {roles}, "endpoints": endpoints, "nat": nat_routes}
        # ... and every security-group rule on the way to the database and the AWS APIs
        must["endpoint ingress"] = _ingress(any_synth, network.endpoints_sg, group)
        if arm == "proxy":
            assert database.proxy is not None and database.proxy_security_group is not None
            must["proxy ingress"] = _ingress(any_synth, database.proxy_security_group, group)
            must["proxy to db"] = _ingress(
                any_synth, database.security_group, database.proxy_security_group
            )
            must["proxy"] = set(any_synth.resources("AWS::RDS::DBProxy")) | set(
                any_synth.resources("AWS::RDS::DBProxyTargetGroup")
            )
        else:
            must["db ingress"] = _ingress(any_synth, database.security_group, group)
        if not contract.arm(arm).managed:  # the capacity provider's group: all outbound inline
            must["egress"] = _egress(any_synth, group)
        for what, ids in must.items():
            if what != "nat":
                assert ids, f"{arm}: no {what} in the template"
            assert ids <= before, f"{arm} function may be created before its {what}: {ids - before}"


def test_capacity_provider_is_created_after_its_instances_way_out(any_synth: Synth) -> None:
    (provider,) = any_synth.resources("AWS::Lambda::CapacityProvider")
    before = created_before(any_synth.raw, provider)
    assert set(any_synth.resources("AWS::EC2::VPCEndpoint")) <= before
    nat_routes = {
        k
        for k, v in any_synth.resources("AWS::EC2::Route").items()
        if "NatGatewayId" in v["Properties"]
    }
    assert nat_routes <= before
    assert bool(nat_routes) == (not any_synth.stack.settings.isolated)


def test_an_unbundled_template_fails_before_anything_is_created(default_synth: Synth) -> None:
    # Given the tests' synth, which runs without bundling (no PgBouncer, no psycopg in assets)
    assert default_synth.stack.bundled is False
    rules = default_synth.raw["Rules"]
    rule = rules["AssetsMustBeBundled"]
    # A rule without RuleCondition applies to every create and update, before any resource
    assert "RuleCondition" not in rule
    (assertion,) = rule["Assertions"]
    assert assertion["AssertDescription"] == UNBUNDLED_MESSAGE
    assert "bundle=false" in UNBUNDLED_MESSAGE and "PgBouncer" in UNBUNDLED_MESSAGE
    # When CloudFormation evaluates it with any value the template's parameters allow
    params = default_synth.raw["Parameters"]

    def evaluate(expr: Any, values: dict[str, str]) -> Any:
        if isinstance(expr, dict) and "Ref" in expr:
            return values[expr["Ref"]]
        if isinstance(expr, dict) and "Fn::Equals" in expr:
            left, right = (evaluate(e, values) for e in expr["Fn::Equals"])
            return left == right
        assert isinstance(expr, str), expr
        return expr

    (param,) = re.findall(r'"Ref": "(\w+)"', json.dumps(assertion["Assert"]))
    allowed = params[param]["AllowedValues"]
    assert params[param]["Default"] in allowed
    # Then it never holds: the deploy stops with the message above
    assert allowed and not any(evaluate(assertion["Assert"], {param: v}) for v in allowed)


def test_api_gateway_account_role_is_set_by_the_stack_and_kept(any_synth: Synth) -> None:
    accounts = any_synth.resources("AWS::ApiGateway::Account")
    assert len(accounts) == 1
    ((account_id, account),) = accounts.items()
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    role = any_synth.raw["Resources"][role_id]
    assert role["Type"] == "AWS::IAM::Role"
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert "AmazonAPIGatewayPushToCloudWatchLogs" in json.dumps(role["Properties"])
    # Account-wide: destroying this stack must not pull the setting from under other APIs
    for resource in (account, role):
        assert resource["DeletionPolicy"] == "Retain"
        assert resource["UpdateReplacePolicy"] == "Retain"
    # The stage with access logs is created only once the account has the role
    (stage_id,) = any_synth.resources("AWS::ApiGateway::Stage")
    stage = any_synth.raw["Resources"][stage_id]
    assert "AccessLogSetting" in stage["Properties"]
    assert account_id in created_before(any_synth.raw, stage_id)


def test_api_gateway_account_role_can_be_left_alone(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.infra.conftest import synthesize

    synth = synthesize(
        {"apiGatewayCloudWatchRole": False, "arms": "standard"},
        tmp_path_factory.mktemp("cdk-no-account-role"),
    )
    assert not synth.resources("AWS::ApiGateway::Account")
    assert not [r for r in synth.resources("AWS::IAM::Role") if "CloudWatchRole" in r]


@pytest.mark.parametrize(
    ("stack_name", "expected"),
    [
        ("PoolbenchStack", "poolbenchstack-proxy"),
        (ISOLATED_STACK_NAME, "poolbench-isolated-b-proxy"),
        ("A-", "a-proxy"),
    ],
)
def test_proxy_name_is_derived_from_the_stack_name(stack_name: str, expected: str) -> None:
    assert proxy_name(stack_name) == expected


RDS_NAME = re.compile(r"^[a-z](?!.*--)[a-z0-9-]*[a-z0-9]$")


def test_long_stack_names_give_distinct_valid_proxy_names() -> None:
    first, second = "B" + "x" * 120 + "one", "B" + "x" * 120 + "two"
    names = {proxy_name(first), proxy_name(second)}
    assert len(names) == 2
    for name in names:
        assert len(name) <= PROXY_NAME_MAX and RDS_NAME.match(name), name


def test_each_stack_gets_its_own_proxy_name(proxy_synth: Synth, isolated_synth: Synth) -> None:
    names = []
    for synth in (proxy_synth, isolated_synth):
        (proxy,) = synth.resources("AWS::RDS::DBProxy").values()
        name = proxy["Properties"]["DBProxyName"]
        assert name == proxy_name(synth.stack.stack_name)
        assert len(name) <= PROXY_NAME_MAX and RDS_NAME.match(name), name
        names.append(name)
    assert names == ["poolbenchstack-proxy", "poolbench-isolated-b-proxy"]


def test_proxy_authenticates_clients_with_scram(proxy_synth: Synth) -> None:
    (proxy,) = proxy_synth.resources("AWS::RDS::DBProxy").values()
    (auth,) = proxy["Properties"]["Auth"]
    assert auth["ClientPasswordAuthType"] == "POSTGRES_SCRAM_SHA_256"
    assert auth["AuthScheme"] == "SECRETS"


def test_every_arm_knows_its_own_timeout(any_synth: Synth) -> None:
    timeouts = set()
    for fn in any_synth.stack.arms.functions.values():
        props = any_synth.raw["Resources"][any_synth.logical_id(fn)]["Properties"]
        env = props["Environment"]["Variables"]
        assert env["FUNCTION_TIMEOUT_MS"] == str(props["Timeout"] * 1000)
        timeouts.add(props["Timeout"])
    assert timeouts == {29}
    assert any_synth.raw["Outputs"]["FunctionTimeoutSeconds"]["Value"] == "29"


def test_aurora_log_group_is_the_stacks_own_so_destroy_removes_it(any_synth: Synth) -> None:
    (cluster_id, cluster), *_ = any_synth.resources("AWS::RDS::DBCluster").items()
    identifier = cluster["Properties"]["DBClusterIdentifier"]
    assert identifier == cluster_identifier(any_synth.stack.stack_name)
    assert len(identifier) <= RDS_NAME_MAX and RDS_NAME.match(identifier), identifier
    assert cluster["Properties"]["EnableCloudwatchLogsExports"] == ["postgresql"]
    # The group RDS would otherwise create itself (and leave behind) is in the template ...
    name = f"/aws/rds/cluster/{identifier}/postgresql"
    groups = {
        k: v
        for k, v in any_synth.resources("AWS::Logs::LogGroup").items()
        if v["Properties"].get("LogGroupName") == name
    }
    assert len(groups) == 1, name
    ((group_id, group),) = groups.items()
    # ... deleted with the stack, and created before the cluster can export to it
    assert group["DeletionPolicy"] == "Delete"
    assert group["Properties"]["RetentionInDays"] == any_synth.stack.settings.log_retention_days
    assert group_id in created_before(any_synth.raw, cluster_id)
    assert not any_synth.resources("Custom::LogRetention")
