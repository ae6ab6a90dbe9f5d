"""Aurora Serverless v2 PostgreSQL 17, its secrets, the per-arm roles, and the optional RDS Proxy.

Why per-arm roles: every arm logs in as its own role, so ``pg_stat_activity`` (the probe) can
say which arm holds which server connection. Each role has its own generated secret; a custom
resource creates the roles at deploy time from those secrets, so passwords exist only in
Secrets Manager. The admin secret is used by nothing but that setup function.
"""

from __future__ import annotations

import hashlib
import re

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import custom_resources as cr
from constructs import Construct

from functions import contract
from infra import nag
from infra.assets import ARCHITECTURE, RUNTIME
from infra.network import Network, retention
from infra.settings import Settings

ADMIN_USER = "poolbench_admin"
PROBE_ROLE = "poolbench_probe"
DB_PORT = contract.DB_PORT_DEFAULT


RDS_NAME_MAX = 63
"""RDS names (DB cluster identifiers, proxy names): 1-63 letters, digits or hyphens, starting with
a letter, with no two consecutive hyphens and no hyphen at the end; unique per account and region
(RDS CreateDBCluster DBClusterIdentifier, CreateDBProxy DBProxyName)."""
PROXY_NAME_MAX = RDS_NAME_MAX


def rds_name(stack_name: str, suffix: str) -> str:
    """``<stack name>-<suffix>`` in lower case, with anything RDS refuses squeezed out.

    Derived from the stack name so that a second stack (``-c stackName=...``) gets its own names.
    A stack name too long for the limit keeps its start and gets a short hash of the whole name,
    so two long names that share a start still get different resources.
    """
    base = re.sub(r"[^a-z0-9-]", "", stack_name.lower())
    base = re.sub(r"-{2,}", "-", base).strip("-")
    base = base.lstrip("0123456789-") or "poolbench"
    name = f"{base}-{suffix}"
    if len(name) > RDS_NAME_MAX:
        digest = hashlib.sha256(stack_name.encode()).hexdigest()[:8]
        head = base[: RDS_NAME_MAX - len(f"-{digest}-{suffix}")].rstrip("-")
        name = f"{head}-{digest}-{suffix}"
    return name


def proxy_name(stack_name: str) -> str:
    """The stack's RDS Proxy name: proxy names are unique per account and region."""
    return rds_name(stack_name, "proxy")


def cluster_identifier(stack_name: str) -> str:
    """The stack's Aurora cluster identifier, fixed so its log group can be this stack's own."""
    return rds_name(stack_name, "db")


def arm_role(arm: str) -> str:
    """The database role an arm logs in as: ``poolbench_standard``, ``poolbench_managed_direct``."""
    return contract.db_role(arm)


class Database(Construct):
    """The cluster, one secret per role, the role setup, and (``proxy`` arm) an RDS Proxy."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        network: Network,
        setup_code: lambda_.Code,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.security_group = ec2.SecurityGroup(
            self,
            "Sg",
            vpc=network.vpc,
            description="Aurora: admits only poolbench functions and the capacity provider",
            allow_all_outbound=False,
        )
        version = getattr(
            rds.AuroraPostgresEngineVersion, "VER_" + settings.postgres_version.replace(".", "_")
        )
        identifier = cluster_identifier(Stack.of(self).stack_name)
        # RDS creates /aws/rds/cluster/<id>/postgresql on first export and never deletes it; a
        # log group of that name created here first is this stack's, so cdk destroy removes it.
        self.postgresql_logs = logs.LogGroup(
            self,
            "PostgresqlLogs",
            log_group_name=f"/aws/rds/cluster/{identifier}/postgresql",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            cluster_identifier=identifier,
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=version),
            credentials=rds.Credentials.from_generated_secret(ADMIN_USER),
            default_database_name=settings.db_name,
            writer=rds.ClusterInstance.serverless_v2(
                "Writer", publicly_accessible=False, auto_minor_version_upgrade=True
            ),
            serverless_v2_min_capacity=settings.min_acu,
            serverless_v2_max_capacity=settings.max_acu,
            vpc=network.vpc,
            vpc_subnets=network.private_subnets,
            security_groups=[self.security_group],
            port=DB_PORT,
            storage_encrypted=True,
            iam_authentication=True,
            deletion_protection=False,
            removal_policy=RemovalPolicy.DESTROY,
            cloudwatch_logs_exports=["postgresql"],
        )
        self.cluster.node.add_dependency(self.postgresql_logs)
        # The secret's own defaults are RETAIN for clusters; a benchmark leaves nothing behind.
        self.admin_secret = self.cluster.secret
        assert self.admin_secret is not None

        self.role_secrets: dict[str, rds.DatabaseSecret] = {}
        for arm in settings.arms:
            title = contract.arm(arm).title
            self.role_secrets[arm] = self._role_secret(f"{title}Secret", arm_role(arm))
        self.probe_secret = self._role_secret("ProbeSecret", PROBE_ROLE)

        self.proxy: rds.DatabaseProxy | None = None
        self.proxy_security_group: ec2.SecurityGroup | None = None
        if settings.proxy:
            self._add_proxy(network)

        self._add_role_setup(network, setup_code)
        nag.acknowledge(self, nag.RUNTIME_PIN, nag.BASIC, "AwsSolutions-SMG4")
        nag.acknowledge(self.cluster, "AwsSolutions-RDS10")
        nag.acknowledge(self.roles_setup_function, nag.VPC)
        # The custom-resource provider framework may invoke only the setup function (any version).
        nag.acknowledge(
            self.roles_provider,
            nag.framework_finding(self.roles_setup_function),
            reason=nag.FRAMEWORK_INVOKE_REASON,
        )

    @property
    def host(self) -> str:
        """The writer endpoint every arm (except ``proxy``) and the probe connect to."""
        return self.cluster.cluster_endpoint.hostname

    def admit(self, peer: ec2.IConnectable, description: str) -> None:
        """Let one security group reach PostgreSQL; the only way into the database."""
        # Connections.allow_from also opens the peer's egress when its outbound is restricted.
        self.security_group.connections.allow_from(peer, ec2.Port.tcp(DB_PORT), description)

    def _role_secret(self, construct_id: str, username: str) -> rds.DatabaseSecret:
        secret = rds.DatabaseSecret(
            self, construct_id, username=username, exclude_characters="\"'@/\\ :"
        )
        secret.apply_removal_policy(RemovalPolicy.DESTROY)
        # Attaching adds host, port and dbname to the secret: one ARN says where and who.
        secret.attach(self.cluster)
        return secret

    def _add_proxy(self, network: Network) -> None:
        """RDS Proxy for the ``proxy`` arm: the managed answer the experiment compares against."""
        self.proxy_security_group = ec2.SecurityGroup(
            self,
            "ProxySg",
            vpc=network.vpc,
            description="RDS Proxy: admits only poolbench functions",
            allow_all_outbound=False,
        )
        self.admit(self.proxy_security_group, "RDS Proxy to Aurora")
        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            proxy_target=rds.ProxyTarget.from_cluster(self.cluster),
            secrets=[self.role_secrets["proxy"]],
            vpc=network.vpc,
            vpc_subnets=network.private_subnets,
            security_groups=[self.proxy_security_group],
            require_tls=True,
            debug_logging=False,
            db_proxy_name=proxy_name(Stack.of(self).stack_name),
            # The API reference gives SCRAM as the default only for RDS for PostgreSQL, and
            # the extension's login check speaks SCRAM: pin it rather than trust Aurora's default.
            client_password_auth_type=rds.ClientPasswordAuthType.POSTGRES_SCRAM_SHA_256,
        )

    def admit_to_proxy(self, peer: ec2.IConnectable, description: str) -> None:
        """Let the proxy arm's functions reach the proxy (and nothing else reach it)."""
        assert self.proxy_security_group is not None
        self.proxy_security_group.connections.allow_from(peer, ec2.Port.tcp(DB_PORT), description)

    def _add_role_setup(self, network: Network, code: lambda_.Code) -> None:
        """A custom resource that creates one login role per arm plus the probe's role."""
        log_group = logs.LogGroup(
            self,
            "RoleSetupLogs",
            retention=retention(self.settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        setup = lambda_.Function(
            self,
            "RoleSetupFn",
            description="poolbench: creates the per-arm database roles at deploy time",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler="functions.probe.setup_roles.on_event",
            code=code,
            memory_size=256,
            timeout=Duration.minutes(2),
            vpc=network.vpc,
            vpc_subnets=network.private_subnets,
            security_groups=[network.functions_sg],
            log_group=log_group,
        )
        assert self.admin_secret is not None
        self.admin_secret.grant_read(setup)
        roles: list[dict[str, str]] = []
        for arm, secret in self.role_secrets.items():
            secret.grant_read(setup)
            roles.append(
                {"Name": arm_role(arm), "SecretArn": secret.secret_arn, "Monitor": "false"}
            )
        self.probe_secret.grant_read(setup)
        roles.append(
            {"Name": PROBE_ROLE, "SecretArn": self.probe_secret.secret_arn, "Monitor": "true"}
        )

        provider_logs = logs.LogGroup(
            self,
            "RoleSetupProviderLogs",
            retention=retention(self.settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.roles_setup_function = setup
        self.roles_provider = cr.Provider(
            self, "RoleSetupProvider", on_event_handler=setup, log_group=provider_logs
        )
        resource = CustomResource(
            self,
            "Roles",
            service_token=self.roles_provider.service_token,
            resource_type="Custom::PoolbenchDbRoles",
            properties={
                "AdminSecretArn": self.admin_secret.secret_arn,
                "Database": self.settings.db_name,
                "Roles": roles,
            },
        )
        # The writer must accept connections before roles can be created.
        resource.node.add_dependency(self.cluster)
        self.roles_resource = resource
