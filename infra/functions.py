"""One function per arm, identical except for how the arm runs, plus the capacity provider.

Why identical: the benchmark compares execution models (one request per environment vs. many),
so runtime, architecture, memory, timeout, code asset and pooler layer version are shared and
the tests check it. What differs is exactly the arm:
- ``standard``: VPC-attached standard Lambda, connects to its in-environment PgBouncer;
- ``managed``: the same function on a Lambda Managed Instances capacity provider (no function VPC
  config: egress leaves through the capacity provider's instances in our subnets);
- ``proxy``: standard Lambda connecting straight to an RDS Proxy (``CONNECT_DIRECT=1``);
- ``direct``: standard Lambda without the layer, connecting straight to the writer endpoint;
- ``managed-direct``: the managed function without the layer, each slot its own connection.
What each arm is (Managed Instances or not, which pooler) comes from ``functions/contract.py``.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IDependable

from functions import contract
from infra import nag
from infra.assets import ARCHITECTURE, FUNCTION_RUNTIMES, HANDLERS
from infra.database import DB_PORT, Database, arm_role
from infra.network import Network, retention
from infra.settings import Settings

MANAGED_RUNTIMES = ("python3.13", "python3.14", "nodejs22.x", "nodejs24.x")
"""Lambda runtimes Managed Instances run among those this stack deploys (FACTS.md: Python
3.13+, Node.js 22+)."""


class ArmFunctions(Construct):
    """The arm functions and, when the managed arm is deployed, its capacity provider."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        network: Network,
        database: Database,
        layer: lambda_.ILayerVersion | None,
        code: lambda_.Code,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.functions: dict[str, lambda_.Function] = {}
        self.capacity_provider: lambda_.CapacityProvider | None = None
        self.proxy_arm_sg: ec2.SecurityGroup | None = None

        for arm in settings.arms:
            fn = self._function(arm, network=network, database=database, layer=layer, code=code)
            self.functions[arm] = fn
        managed = [fn for arm, fn in self.functions.items() if contract.arm(arm).managed]
        if managed:
            self._add_capacity_provider(network, managed)
        nag.acknowledge(self, nag.RUNTIME_PIN, nag.BASIC)
        for arm, fn in self.functions.items():
            if not contract.arm(arm).managed:  # VPC-attached: AWS's ENI policy
                nag.acknowledge(fn, nag.VPC)
        nag.acknowledge(self.capacity_provider, nag.OPERATOR)

    def _environment(self, arm: str, database: Database) -> dict[str, str]:
        """The handler's and the extension's env contract (DESIGN.md); secrets by ARN only."""
        spec = contract.arm(arm)
        c = contract
        host = database.host  # the writer endpoint: the in-EE pooler's and direct arms' target
        if spec.pooler is contract.Pooler.SHARED:
            assert database.proxy is not None
            host = database.proxy.endpoint
        env = {
            c.ENV_ARM: arm,
            c.ENV_DB_HOST: host,
            c.ENV_DB_PORT: str(DB_PORT),
            c.ENV_DB_NAME: self.settings.db_name,
            c.ENV_DB_USER: arm_role(arm),
            c.ENV_DB_SECRET_ARN: database.role_secrets[arm].secret_arn,
            # The handler bounds sleep_ms by this (minus a margin) and answers 400 beyond it, so
            # a request never outlives the function and turns into API Gateway's 504.
            c.ENV_FUNCTION_TIMEOUT_MS: str(self.settings.timeout_seconds * 1000),
        }
        if spec.has_layer:  # the extension's own settings, only where the extension runs
            env.update(
                {
                    c.ENV_POOLER_PORT: str(c.POOLER_PORT_DEFAULT),
                    c.ENV_SERVER_TLS_SSLMODE: "require",
                    **self.settings.pooler_environment(),
                }
            )
        if spec.connects_direct:
            env[c.ENV_CONNECT_DIRECT] = "1"
        if spec.managed and self.settings.runtime == "nodejs":
            size = c.node_threadpool_size(c.node_workers(self.settings.managed_vcpus))
            env[c.ENV_UV_THREADPOOL_SIZE] = str(size)
        return env

    def _function(
        self,
        arm: str,
        *,
        network: Network,
        database: Database,
        layer: lambda_.ILayerVersion | None,
        code: lambda_.Code,
    ) -> lambda_.Function:
        spec = contract.arm(arm)
        name = spec.title
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=retention(self.settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        vpc_props: dict[str, object] = {}
        if not spec.managed and spec.pooler is not contract.Pooler.SHARED:
            # standard and direct: the functions' group, the one the database admits.
            vpc_props = {
                "vpc": network.vpc,
                "vpc_subnets": network.private_subnets,
                "security_groups": [network.functions_sg],
            }
        elif spec.pooler is contract.Pooler.SHARED:
            # Its own group: the proxy arm may reach the proxy, never the cluster directly.
            self.proxy_arm_sg = ec2.SecurityGroup(
                self,
                "ProxyArmSg",
                vpc=network.vpc,
                description="poolbench proxy arm: reaches RDS Proxy and AWS APIs only",
                allow_all_outbound=False,
            )
            network.endpoints_sg.connections.allow_from(
                self.proxy_arm_sg, ec2.Port.tcp(443), "HTTPS to AWS APIs from the proxy arm"
            )
            database.admit_to_proxy(self.proxy_arm_sg, "proxy arm to RDS Proxy")
            vpc_props = {
                "vpc": network.vpc,
                "vpc_subnets": network.private_subnets,
                "security_groups": [self.proxy_arm_sg],
            }
        fn = lambda_.Function(
            self,
            f"{name}Fn",
            description=f"poolbench {arm} arm",
            runtime=FUNCTION_RUNTIMES[self.settings.runtime],
            architecture=ARCHITECTURE,
            memory_size=self.settings.memory_mb,
            timeout=Duration.seconds(self.settings.timeout_seconds),
            handler=HANDLERS[self.settings.runtime],
            code=code,
            layers=[layer] if spec.has_layer and layer is not None else [],
            environment=self._environment(arm, database),
            log_group=log_group,
            **vpc_props,  # type: ignore[arg-type]
        )
        database.role_secrets[arm].grant_read(fn)
        for need in self._init_needs(arm, network, database):
            fn.node.add_dependency(need)
        return fn

    def _init_needs(self, arm: str, network: Network, database: Database) -> list[IDependable]:
        """What an execution environment's init needs to exist before the function is created.

        Publishing a Managed Instances function starts three EEs before ``$LATEST.PUBLISHED``
        is ACTIVE, and their extension reads the secret and logs in to the database at init: a
        failing init marks the EE unhealthy and the publish fails. So the function waits for
        the writer instance (the cluster construct holds it), the role its extension logs in as,
        every VPC endpoint, the security-group rules on the way (ingress rules live under the
        group they open, egress rules under the group they leave), and the NAT route. The other
        arms init only on their first invoke, but get the same order, so no arm's first request
        can meet a half-built stack.
        """
        needs: list[IDependable] = [
            database.cluster,
            database.roles_resource,
            database.security_group,
            network.endpoints_sg,
            *network.endpoints,
            network.egress_ready,
        ]
        spec = contract.arm(arm)
        if spec.managed:
            needs.append(network.capacity_provider_sg)
        elif spec.pooler is not contract.Pooler.SHARED:
            needs.append(network.functions_sg)
        else:
            assert database.proxy is not None and database.proxy_security_group is not None
            assert self.proxy_arm_sg is not None
            needs += [database.proxy, database.proxy_security_group, self.proxy_arm_sg]
        return needs

    def _add_capacity_provider(self, network: Network, functions: list[lambda_.Function]) -> None:
        """The managed arms' capacity provider (one, shared: the same instances and scaling
        knobs, so only the pooler differs), after checking what the L2 does not."""
        for fn in functions:
            check_managed_function(fn, self.settings)
        s = self.settings
        self.capacity_provider = lambda_.CapacityProvider(
            self,
            "CapacityProvider",
            subnets=network.vpc.select_subnets(
                subnet_type=network.private_subnets.subnet_type
            ).subnets,
            security_groups=[network.capacity_provider_sg],
            architectures=[ARCHITECTURE],
            instance_type_filter=lambda_.InstanceTypeFilter.allow(
                [ec2.InstanceType(t) for t in s.managed_instance_types]
            ),
            max_v_cpu_count=s.max_vcpu_count,
        )
        # Its instances need their way out (NAT route or endpoints) from their first boot.
        for need in (network.egress_ready, *network.endpoints):
            self.capacity_provider.node.add_dependency(need)
        # CloudFormation creates $LATEST.PUBLISHED for a Managed Instances function, and
        # unqualified invokes (API Gateway's integration) go to it: no explicit Version needed.
        for fn in functions:
            self.capacity_provider.add_function(
                fn,
                per_execution_environment_max_concurrency=s.per_environment_max_concurrency,
                execution_environment_memory_gib_per_v_cpu=s.memory_gib_per_vcpu,
                latest_published_scaling_config=lambda_.LatestPublishedScalingConfig(
                    min_execution_environments=s.min_execution_environments,
                    max_execution_environments=s.max_execution_environments,
                ),
                publish_to_latest_published=True,
            )


def check_managed_function(fn: lambda_.Function, settings: Settings) -> None:
    """LMI's rules on the function itself; the CapacityProvider L2 checks none of them (FACTS.md).

    Settings already refuse bad context; this guards the construct wiring (a refactor that feeds
    a different memory or runtime to the managed function fails synthesis here).
    """
    cfn = fn.node.default_child
    assert isinstance(cfn, lambda_.CfnFunction)
    problems = []
    expected = FUNCTION_RUNTIMES[settings.runtime].name
    if fn.runtime.name != expected or fn.runtime.name not in MANAGED_RUNTIMES:
        problems.append(
            f"runtime {fn.runtime.name} (context runtime={settings.runtime} deploys {expected};"
            " Managed Instances run python3.13+ and nodejs22.x+)"
        )
    if fn.architecture.name != ARCHITECTURE.name:
        problems.append(f"architecture {fn.architecture.name} (the capacity provider is arm64)")
    memory = cfn.memory_size
    if not isinstance(memory, int | float) or memory < 2048:
        problems.append(f"memory {memory} MB (Managed Instances need >= 2048 MB)")
    if fn.is_bound_to_vpc:
        problems.append("a function VPC config (the capacity provider's VPC config applies)")
    if problems:
        raise ValueError(
            f"managed arm function {fn.node.path}: "
            + "; ".join(problems)
            + f"; context memoryMb={settings.memory_mb}"
        )
