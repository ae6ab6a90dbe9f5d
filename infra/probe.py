"""The probe function: ``pg_stat_activity`` counts per arm role, every few seconds during a run.

Why: CloudWatch's DatabaseConnections has 1-minute resolution; the probe answers "how many server
connections does each arm hold now" at the moment ``poolbench run`` asks. It runs in the VPC as
its own role and connects straight to the cluster, so it never goes through any pooler.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions import contract
from infra import nag
from infra.assets import ARCHITECTURE, RUNTIME
from infra.database import DB_PORT, Database, arm_role
from infra.network import Network, retention
from infra.settings import Settings


class Probe(Construct):
    """A small VPC function returning one samples.jsonl line (docs/contracts.md)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        network: Network,
        database: Database,
        code: lambda_.Code,
    ) -> None:
        super().__init__(scope, construct_id)
        log_group = logs.LogGroup(
            self,
            "Logs",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.function = lambda_.Function(
            self,
            "Fn",
            description="poolbench probe: database sessions per arm role",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            memory_size=256,
            timeout=Duration.seconds(10),
            handler="functions.probe.handler.handler",
            code=code,
            vpc=network.vpc,
            vpc_subnets=network.private_subnets,
            security_groups=[network.functions_sg],
            log_group=log_group,
            environment={
                contract.ENV_DB_HOST: database.host,
                contract.ENV_DB_PORT: str(DB_PORT),
                contract.ENV_DB_NAME: settings.db_name,
                contract.ENV_DB_SECRET_ARN: database.probe_secret.secret_arn,
                contract.ENV_ARM_ROLES: json.dumps({a: arm_role(a) for a in settings.arms}),
            },
        )
        database.probe_secret.grant_read(self.function)
        nag.acknowledge(self, nag.RUNTIME_PIN, nag.BASIC, nag.VPC)
