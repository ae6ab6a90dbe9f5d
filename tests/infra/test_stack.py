"""What the synthesized template must show (issue 6), checked with aws_cdk.assertions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match

from functions import contract
from infra.functions import check_managed_function
from infra.settings import Settings
from tests.infra.conftest import Synth

pytestmark = pytest.mark.infra

SHARED_PROPS = ("Runtime", "MemorySize", "Architectures", "Timeout", "Code", "Handler")


def arm_functions(synth: Synth) -> dict[str, dict[str, Any]]:
    """Arm name -> the Lambda function resource of that arm."""
    return {
        arm: synth.raw["Resources"][synth.logical_id(fn)]
        for arm, fn in synth.stack.arms.functions.items()
    }


def test_exactly_one_capacity_provider_attached_only_to_the_managed_arm(any_synth: Synth) -> None:
    # Given the synthesized stack
    providers = any_synth.resources("AWS::Lambda::CapacityProvider")
    # Then there is one capacity provider ...
    assert len(providers) == 1
    (provider_id,) = providers
    # ... and exactly the managed arms' functions (managed, managed-direct) run on it
    on_provider = {
        k
        for k, v in any_synth.resources("AWS::Lambda::Function").items()
        if "CapacityProviderConfig" in v["Properties"]
    }
    managed = {
        any_synth.logical_id(fn)
        for arm, fn in any_synth.stack.arms.functions.items()
        if contract.arm(arm).managed
    }
    assert on_provider == managed
    for function_id in on_provider:
        props = any_synth.raw["Resources"][function_id]["Properties"]
        lmi = props["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
        assert lmi["CapacityProviderArn"] == {"Fn::GetAtt": [provider_id, "Arn"]}


def test_capacity_provider_is_arm64_m8g_in_our_subnets_and_group(default_synth: Synth) -> None:
    network = default_synth.stack.network
    default_synth.template.has_resource_properties(
        "AWS::Lambda::CapacityProvider",
        {
            "InstanceRequirements": {
                "Architectures": ["arm64"],
                "AllowedInstanceTypes": ["m8g.large"],
            },
            "CapacityProviderScalingConfig": {"MaxVCpuCount": 16},
            "VpcConfig": {
                "SecurityGroupIds": [
                    {
                        "Fn::GetAtt": [
                            default_synth.logical_id(network.capacity_provider_sg),
                            "GroupId",
                        ]
                    }
                ],
                "SubnetIds": Match.any_value(),
            },
        },
    )


def test_arms_share_one_layer_runtime_memory_architecture_timeout_and_code(
    any_synth: Synth,
) -> None:
    functions = arm_functions(any_synth)
    assert set(functions) == set(any_synth.stack.settings.arms)
    # Every shared property is identical across the arms
    for prop in SHARED_PROPS:
        values = {json.dumps(f["Properties"][prop], sort_keys=True) for f in functions.values()}
        assert len(values) == 1, f"{prop} differs between arms: {values}"
    first = next(iter(functions.values()))["Properties"]
    runtime, handler = {
        "python": ("python3.13", "functions.app.handler.handler"),
        "nodejs": ("nodejs24.x", "index.handler"),
    }[any_synth.stack.settings.runtime]
    assert (first["Runtime"], first["Handler"]) == (runtime, handler)
    assert first["Architectures"] == ["arm64"]
    # ... and every arm with the in-EE pooler carries the one pooler layer of this stack; the
    # arms without it (proxy, direct, managed-direct) carry no layer at all
    layers = any_synth.resources("AWS::Lambda::LayerVersion")
    pooled = {arm for arm in functions if contract.arm(arm).has_layer}
    assert len(layers) == (1 if pooled else 0)
    for arm, fn in functions.items():
        expected = [{"Ref": next(iter(layers))}] if arm in pooled else None
        assert fn["Properties"].get("Layers") == expected, arm
    for layer in layers.values():
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
        # one layer for both runtimes: it brings the Python its extension runs on
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13", "nodejs24.x"]


def test_managed_function_satisfies_managed_instances_rules(default_synth: Synth) -> None:
    props = arm_functions(default_synth)["managed"]["Properties"]
    assert props["MemorySize"] >= 2048
    assert props["Architectures"] == ["arm64"]
    assert props["Runtime"] == "python3.13"
    # The capacity provider's VPC config applies; a function VpcConfig would be refused
    assert "VpcConfig" not in props
    lmi = props["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert lmi["PerExecutionEnvironmentMaxConcurrency"] == 16
    assert lmi["ExecutionEnvironmentMemoryGiBPerVCpu"] == 2
    assert props["FunctionScalingConfig"] == {
        "MinExecutionEnvironments": 3,
        "MaxExecutionEnvironments": 6,
    }


def test_our_own_managed_check_refuses_what_the_l2_accepts() -> None:
    # Given a function the CapacityProvider L2 would happily take (1 GB, x86_64)
    from aws_cdk import App, Stack

    stack = Stack(App(), "Check")
    fn = lambda_.Function(
        stack,
        "Small",
        runtime=lambda_.Runtime.PYTHON_3_12,
        architecture=lambda_.Architecture.X86_64,
        memory_size=1024,
        handler="x.handler",
        code=lambda_.Code.from_inline("def handler(e, c): pass"),
    )
    # Then our check names every broken rule in one message
    with pytest.raises(ValueError) as info:
        check_managed_function(fn, Settings(arms=("standard",)))
    message = str(info.value)
    assert "memory 1024 MB" in message
    assert "architecture x86_64" in message
    assert "runtime python3.12" in message


def test_aurora_is_serverless_v2_postgres_17_and_private(default_synth: Synth) -> None:
    default_synth.template.has_resource_properties(
        "AWS::RDS::DBCluster",
        {
            "Engine": "aurora-postgresql",
            "EngineVersion": Match.string_like_regexp(r"^17\."),
            "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 4},
            "StorageEncrypted": True,
            "MasterUsername": Match.any_value(),
        },
    )
    instances = default_synth.resources("AWS::RDS::DBInstance")
    assert instances
    for inst in instances.values():
        assert inst["Properties"]["DBInstanceClass"] == "db.serverless"
        assert inst["Properties"]["PubliclyAccessible"] is False


def _public_subnets(synth: Synth) -> set[str]:
    return {
        k
        for k, v in synth.resources("AWS::EC2::Subnet").items()
        if v["Properties"]["MapPublicIpOnLaunch"]
    }


def test_database_and_compute_live_in_private_subnets_only(any_synth: Synth) -> None:
    public = _public_subnets(any_synth)
    (group,) = any_synth.resources("AWS::RDS::DBSubnetGroup").values()
    (provider,) = any_synth.resources("AWS::Lambda::CapacityProvider").values()
    placed = [
        group["Properties"]["SubnetIds"],
        provider["Properties"]["VpcConfig"]["SubnetIds"],
        *(
            fn["Properties"]["VpcConfig"]["SubnetIds"]
            for fn in any_synth.resources("AWS::Lambda::Function").values()
            if "VpcConfig" in fn["Properties"]
        ),
    ]
    for subnets in placed:
        ids = {s["Ref"] for s in subnets}
        assert ids and not ids & public, subnets


def test_default_egress_is_one_nat_gateway_for_the_private_subnets(default_synth: Synth) -> None:
    # Every AWS sample for Managed Instances has internet egress: one NAT gateway by default
    nats = default_synth.resources("AWS::EC2::NatGateway")
    assert len(nats) == 1
    (nat,) = nats
    public = _public_subnets(default_synth)
    assert len(public) == 2  # one per AZ: the NAT's and the other zone's
    private = set(default_synth.resources("AWS::EC2::Subnet")) - public
    tables = {
        a["Properties"]["RouteTableId"]["Ref"]
        for a in default_synth.resources("AWS::EC2::SubnetRouteTableAssociation").values()
        if a["Properties"]["SubnetId"]["Ref"] in private
    }
    to_nat = {
        r["Properties"]["RouteTableId"]["Ref"]
        for r in default_synth.resources("AWS::EC2::Route").values()
        if r["Properties"].get("NatGatewayId") == {"Ref": nat}
        and r["Properties"]["DestinationCidrBlock"] == "0.0.0.0/0"
    }
    assert len(tables) == 2 and tables == to_nat


def test_isolated_mode_has_no_route_out_and_the_endpoints_instances_need(
    isolated_synth: Synth, default_synth: Synth
) -> None:
    assert not isolated_synth.resources("AWS::EC2::InternetGateway")
    assert not isolated_synth.resources("AWS::EC2::NatGateway")
    assert not _public_subnets(isolated_synth)
    isolated = _endpoint_services(isolated_synth)
    # The endpoints a public fully-private Managed Instances pattern needed after review
    for service in ("ecr.api", "ecr.dkr", "ec2", "secretsmanager", "logs"):
        assert ("Interface", service) in isolated, (service, isolated)
    # With a NAT gateway only what the restricted standard functions need is an endpoint
    assert {s for kind, s in _endpoint_services(default_synth) if kind == "Interface"} == {
        "secretsmanager",
        "logs",
    }


def _endpoint_services(synth: Synth) -> set[tuple[str, str]]:
    """(endpoint type, service suffix) of every VPC endpoint: ("Gateway", "s3") ..."""
    out = set()
    for endpoint in synth.resources("AWS::EC2::VPCEndpoint").values():
        props = endpoint["Properties"]
        name = json.dumps(props["ServiceName"])
        suffix = re.search(r"\.(ecr\.api|ecr\.dkr|[a-z0-9]+)\"", name)
        assert suffix, name
        out.add((props.get("VpcEndpointType", "Gateway"), suffix.group(1)))
    return out


def test_s3_gateway_endpoint_serves_the_private_subnets_in_both_modes(any_synth: Synth) -> None:
    gateways = [
        e["Properties"]
        for e in any_synth.resources("AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    ]
    assert len(gateways) == 1
    assert ".s3" in json.dumps(gateways[0]["ServiceName"])
    public = _public_subnets(any_synth)
    private_tables = {
        a["Properties"]["RouteTableId"]["Ref"]
        for a in any_synth.resources("AWS::EC2::SubnetRouteTableAssociation").values()
        if a["Properties"]["SubnetId"]["Ref"] not in public
    }
    assert {t["Ref"] for t in gateways[0]["RouteTableIds"]} == private_tables


def test_acu_range_comes_from_context(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.infra.conftest import synthesize

    synth = synthesize({"minAcu": 1, "maxAcu": 8, "nag": False}, tmp_path_factory.mktemp("cdk-acu"))
    synth.template.has_resource_properties(
        "AWS::RDS::DBCluster",
        {"ServerlessV2ScalingConfiguration": {"MinCapacity": 1, "MaxCapacity": 8}},
    )


def test_database_admits_only_the_functions_and_the_capacity_provider(any_synth: Synth) -> None:
    stack = any_synth.stack
    db_sg = any_synth.logical_id(stack.database.security_group)
    allowed = {
        any_synth.logical_id(stack.network.functions_sg),
        any_synth.logical_id(stack.network.capacity_provider_sg),
    }
    if stack.database.proxy_security_group is not None:
        allowed.add(any_synth.logical_id(stack.database.proxy_security_group))
    sources = set()
    for rule in any_synth.resources("AWS::EC2::SecurityGroupIngress").values():
        props = rule["Properties"]
        if props["GroupId"] == {"Fn::GetAtt": [db_sg, "GroupId"]}:
            # 5432, or the cluster's port attribute (RDS Proxy's own rule)
            port_attr = {
                "Fn::GetAtt": [any_synth.logical_id(stack.database.cluster), "Endpoint.Port"]
            }
            assert props["FromPort"] == props["ToPort"]
            assert props["FromPort"] in (5432, port_attr)
            sources.add(props["SourceSecurityGroupId"]["Fn::GetAtt"][0])
    assert sources == allowed
    # No security group anywhere is open to an address range
    for sg in any_synth.resources("AWS::EC2::SecurityGroup").values():
        for rule in sg["Properties"].get("SecurityGroupIngress", []):
            assert "CidrIp" not in rule and "CidrIpv6" not in rule, rule


def test_proxy_arm_reaches_the_proxy_not_the_cluster(proxy_synth: Synth) -> None:
    stack = proxy_synth.stack
    assert stack.arms.proxy_arm_sg is not None and stack.database.proxy is not None
    env = arm_functions(proxy_synth)["proxy"]["Properties"]["Environment"]["Variables"]
    assert env["CONNECT_DIRECT"] == "1"
    assert env["DB_HOST"] == {
        "Fn::GetAtt": [proxy_synth.logical_id(stack.database.proxy), "Endpoint"]
    }
    proxy_arm = proxy_synth.logical_id(stack.arms.proxy_arm_sg)
    db_sg = proxy_synth.logical_id(stack.database.security_group)
    egress = [
        rule["Properties"]
        for rule in proxy_synth.resources("AWS::EC2::SecurityGroupEgress").values()
        if rule["Properties"]["GroupId"] == {"Fn::GetAtt": [proxy_arm, "GroupId"]}
    ]
    assert egress, "the proxy arm's group has no egress rule at all"
    destinations = [props.get("DestinationSecurityGroupId") for props in egress]
    assert {"Fn::GetAtt": [db_sg, "GroupId"]} not in destinations
    assert stack.database.proxy_security_group is not None
    proxy_sg = proxy_synth.logical_id(stack.database.proxy_security_group)
    assert {"Fn::GetAtt": [proxy_sg, "GroupId"]} in destinations
    proxy_synth.template.has_resource_properties("AWS::RDS::DBProxy", {"RequireTLS": True})


def _walk(value: Any) -> list[str]:
    """Every string in a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_walk(v))]
    if isinstance(value, list):
        return [s for v in value for s in _walk(v)]
    return []


def test_no_password_in_environments_or_outputs_and_secrets_by_arn(any_synth: Synth) -> None:
    secrets = set(any_synth.resources("AWS::SecretsManager::Secret"))
    for name, fn in any_synth.resources("AWS::Lambda::Function").items():
        variables = fn["Properties"].get("Environment", {}).get("Variables", {})
        for key, value in variables.items():
            assert "PASSWORD" not in key.upper(), f"{name} has {key}"
            if key == "DB_SECRET_ARN":
                # An ARN (Ref of a secret resource), never the secret's value
                assert value.get("Ref") in secrets, value
        assert not any("resolve:secretsmanager" in s for s in _walk(variables)), name
    outputs = any_synth.raw["Outputs"]
    for key, out in outputs.items():
        strings = _walk(out)
        assert not any("password" in s.lower() for s in strings), key
        assert not any("secretsmanager" in s for s in strings), key
        assert not any(s in secrets for s in strings), f"output {key} refers to a secret"
    # The admin password is a dynamic reference resolved by CloudFormation, not a literal
    (cluster,) = any_synth.resources("AWS::RDS::DBCluster").values()
    password = json.dumps(cluster["Properties"]["MasterUserPassword"])
    assert "resolve:secretsmanager" in password
    # Role passwords are generated by Secrets Manager; the custom resource gets ARNs only
    (roles,) = any_synth.resources("Custom::PoolbenchDbRoles").values()
    for role in roles["Properties"]["Roles"]:
        assert set(role) == {"Name", "SecretArn", "Monitor"}
        assert role["SecretArn"]["Ref"] in secrets


def test_each_arm_logs_in_as_its_own_role(any_synth: Synth) -> None:
    (roles,) = any_synth.resources("Custom::PoolbenchDbRoles").values()
    names = [r["Name"] for r in roles["Properties"]["Roles"]]
    arms = any_synth.stack.settings.arms
    assert names == [contract.db_role(a) for a in arms] + ["poolbench_probe"]
    for arm, fn in arm_functions(any_synth).items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["DB_USER"] == contract.db_role(arm)
        assert env["ARM"] == arm
    # The roles are created only once the cluster (and its writer) exists
    (roles_id,) = any_synth.resources("Custom::PoolbenchDbRoles")
    depends = any_synth.raw["Resources"][roles_id].get("DependsOn", [])
    assert any(d in any_synth.resources("AWS::RDS::DBInstance") for d in depends)


def test_api_has_one_resource_per_arm_integrated_with_the_unqualified_function(
    any_synth: Synth,
) -> None:
    arms = any_synth.stack.settings.arms
    paths = {
        r["Properties"]["PathPart"]
        for r in any_synth.resources("AWS::ApiGateway::Resource").values()
    }
    assert paths == set(arms)
    fn_ids = {any_synth.logical_id(fn) for fn in any_synth.stack.arms.functions.values()}
    integrated = set()
    for method in any_synth.resources("AWS::ApiGateway::Method").values():
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        uri = json.dumps(integration["Uri"])
        ids = {i for i in fn_ids if f'["{i}", "Arn"]' in uri}
        assert len(ids) == 1, uri
        # Unqualified ARN: the managed arm's invokes go to $LATEST.PUBLISHED
        assert "LATEST" not in uri and ":live" not in uri
        integrated |= ids
    assert integrated == fn_ids
    any_synth.template.has_resource_properties("AWS::ApiGateway::RestApi", {"Name": "poolbench"})
    any_synth.template.has_resource_properties("AWS::ApiGateway::Stage", {"StageName": "prod"})


def test_outputs_are_the_contract(any_synth: Synth) -> None:
    arms = any_synth.stack.settings.arms
    expected = {
        "ApiUrl",
        "Arms",
        "MetricsSource",
        "Runtime",
        "CapacityProviderName",
        "DbClusterIdentifier",
        "ApiName",
        "ApiStage",
        "ProbeFunctionName",
        "Region",
        "FunctionTimeoutSeconds",
        "ManagedPerEnvironmentMaxConcurrency",
        "ManagedMinExecutionEnvironments",
        "ManagedMaxExecutionEnvironments",
        *(contract.function_name_output(a) for a in arms),
    }
    outputs = any_synth.raw["Outputs"]
    assert set(outputs) == expected
    # The managed arm's capacity, as the capacity provider config and scaling config have it
    first_managed = next(a for a in arms if contract.arm(a).managed)
    managed = arm_functions(any_synth)[first_managed]["Properties"]
    lmi = managed["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    scaling = managed["FunctionScalingConfig"]
    assert outputs["ManagedPerEnvironmentMaxConcurrency"]["Value"] == str(
        lmi["PerExecutionEnvironmentMaxConcurrency"]
    )
    assert outputs["ManagedMinExecutionEnvironments"]["Value"] == str(
        scaling["MinExecutionEnvironments"]
    )
    assert outputs["ManagedMaxExecutionEnvironments"]["Value"] == str(
        scaling["MaxExecutionEnvironments"]
    )
    assert outputs["FunctionTimeoutSeconds"]["Value"] == str(managed["Timeout"])
    assert outputs["Arms"]["Value"] == ",".join(arms)
    assert outputs["MetricsSource"]["Value"] == "cloudwatch"
    assert outputs["ApiName"]["Value"] == "poolbench"
    assert outputs["Region"]["Value"] == {"Ref": "AWS::Region"}
    assert json.dumps(outputs["ApiUrl"]["Value"]).endswith('"/"]]}')
    for arm, fn in any_synth.stack.arms.functions.items():
        assert outputs[contract.function_name_output(arm)]["Value"] == {
            "Ref": any_synth.logical_id(fn)
        }


def test_probe_runs_in_the_vpc_and_knows_every_arm_role(any_synth: Synth) -> None:
    probe = any_synth.raw["Resources"][any_synth.logical_id(any_synth.stack.probe.function)]
    props = probe["Properties"]
    assert props["Handler"] == "functions.probe.handler.handler"
    assert "VpcConfig" in props
    env = props["Environment"]["Variables"]
    arms = any_synth.stack.settings.arms
    assert json.loads(env["ARM_ROLES"]) == {a: contract.db_role(a) for a in arms}


def test_functions_reach_secrets_manager_and_logs_through_endpoints(default_synth: Synth) -> None:
    services = {
        json.dumps(e["Properties"]["ServiceName"])
        for e in default_synth.resources("AWS::EC2::VPCEndpoint").values()
    }
    assert any("secretsmanager" in s for s in services)
    assert any(".logs" in s for s in services)


@pytest.mark.parametrize("arm", ["direct", "managed-direct"])
def test_direct_arms_connect_to_the_writer_with_their_own_secret_and_no_pooler(
    direct_synth: Synth, arm: str
) -> None:
    stack = direct_synth.stack
    props = arm_functions(direct_synth)[arm]["Properties"]
    env = props["Environment"]["Variables"]
    # Straight to the writer endpoint, with the password the handler reads from its own secret
    assert env["CONNECT_DIRECT"] == "1"
    assert env["DB_HOST"] == {
        "Fn::GetAtt": [direct_synth.logical_id(stack.database.cluster), "Endpoint.Address"]
    }
    assert env["DB_USER"] == contract.db_role(arm)
    own_secret = direct_synth.logical_id(stack.database.role_secrets[arm])
    assert env["DB_SECRET_ARN"] == {"Ref": own_secret}
    # No pooler anywhere: no layer, no extension settings
    assert "Layers" not in props
    assert not [k for k in env if k.startswith(("POOL", "DEFAULT_POOL", "MIN_POOL", "SERVER_"))]
    assert not direct_synth.resources("AWS::Lambda::LayerVersion")
    # Managed-direct runs on the capacity provider (its VPC config); direct in the functions'
    # group, the one the database admits
    if arm == "managed-direct":
        assert "VpcConfig" not in props
        assert "CapacityProviderConfig" in props
    else:
        assert props["VpcConfig"]["SecurityGroupIds"] == [
            {"Fn::GetAtt": [direct_synth.logical_id(stack.network.functions_sg), "GroupId"]}
        ]
    # Least privilege: the function's role reads its own secret and no other
    role_id = props["Role"]["Fn::GetAtt"][0]
    read = set()
    for policy in direct_synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            actions = actions if isinstance(actions, list) else [actions]
            if any(a.startswith("secretsmanager:") for a in actions):
                read.add(json.dumps(statement["Resource"]))
    assert read == {json.dumps({"Ref": own_secret})}


def test_every_handler_of_ours_names_a_function_that_exists(any_synth: Synth) -> None:
    # The role setup (functions.probe.setup_roles.on_event), the probe and the arms: a renamed
    # module would otherwise surface only as a failed deploy.
    import importlib

    handlers = {
        fn["Properties"]["Handler"]
        for fn in any_synth.resources("AWS::Lambda::Function").values()
        if str(fn["Properties"].get("Handler", "")).startswith("functions.")
    }
    assert "functions.probe.setup_roles.on_event" in handlers
    for handler in handlers:
        module, _, name = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), handler
