"""The VPC, the security groups and the private paths to AWS APIs.

Why this shape: the database must be reachable only from the benchmark's own compute. The
functions need two AWS APIs from inside the VPC: Secrets Manager (the pooler extension, the
handler and the role setup read passwords by ARN) and CloudWatch Logs (Lambda Managed Instances
ship function logs from the instance, through the VPC); interface endpoints give both, and the
standard functions' security group reaches nothing else.

Why a NAT gateway by default (``natGateways=1``): what the capacity provider's instances and
Lambda's agents on them need to reach is not documented, and every AWS sample for Managed
Instances has internet egress. If they cannot start, ``$LATEST.PUBLISHED`` never becomes ACTIVE
and the deploy hangs. ``natGateways=0`` keeps the isolated design (no internet route at all) with
the extra endpoints a public fully-private pattern needed: ECR (api, dkr) and EC2 besides the
S3 gateway endpoint, which is there in both modes because it is free. Isolated mode is unverified
on AWS (docs/aws.md).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct, IDependable

from infra.settings import Settings


class Network(Construct):
    """VPC across ``maxAzs`` zones, one security group per kind of client, and VPC endpoints."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        private_type = (
            ec2.SubnetType.PRIVATE_WITH_EGRESS
            if settings.nat_gateways
            else ec2.SubnetType.PRIVATE_ISOLATED
        )
        subnets = [ec2.SubnetConfiguration(name="private", subnet_type=private_type, cidr_mask=22)]
        if settings.nat_gateways:
            subnets.append(
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                )
            )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=settings.max_azs,
            nat_gateways=settings.nat_gateways,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
            flow_logs={
                "rejects": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )
        self.private_subnets = ec2.SubnetSelection(subnet_type=private_type)

        # Standard (VPC-attached) functions: the arms, the probe and the role setup. Egress is
        # opened rule by rule (database, endpoints) by the constructs that need it.
        self.functions_sg = ec2.SecurityGroup(
            self,
            "FunctionsSg",
            vpc=self.vpc,
            description="poolbench standard Lambda functions (arms, probe, role setup)",
            allow_all_outbound=False,
        )
        # The capacity provider's instances carry the managed arm's traffic and the service's
        # own agents; what those agents need is not documented, so egress stays open and the
        # subnet routing (no internet route when natGateways=0) is the boundary.
        self.capacity_provider_sg = ec2.SecurityGroup(
            self,
            "CapacityProviderSg",
            vpc=self.vpc,
            description="poolbench Lambda Managed Instances capacity provider instances",
            allow_all_outbound=True,
        )
        self.endpoints_sg = ec2.SecurityGroup(
            self,
            "EndpointsSg",
            vpc=self.vpc,
            description="Interface endpoints for the AWS APIs poolbench compute calls",
            allow_all_outbound=False,
        )
        for client in (self.functions_sg, self.capacity_provider_sg):
            self.endpoints_sg.connections.allow_from(
                client, ec2.Port.tcp(443), "HTTPS to AWS APIs from poolbench compute"
            )
        # Free, and the path to S3 for anything the instances pull (runtime image layers).
        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.private_subnets]
        )
        services = [
            ("SecretsManager", ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER),
            ("Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
        ]
        if settings.isolated:
            services += [
                ("EcrApi", ec2.InterfaceVpcEndpointAwsService.ECR),
                ("EcrDocker", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER),
                ("Ec2", ec2.InterfaceVpcEndpointAwsService.EC2),
            ]
        self.interface_endpoints: list[ec2.InterfaceVpcEndpoint] = []
        for name, service in services:
            endpoint = self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.private_subnets,
                security_groups=[self.endpoints_sg],
                private_dns_enabled=True,
                # Not the whole VPC CIDR: only the groups admitted above may use the endpoints.
                open=False,
            )
            self.interface_endpoints.append(endpoint)

    @property
    def endpoints(self) -> list[ec2.IVpcEndpoint]:
        """Every VPC endpoint: what an execution environment's init may need before it runs."""
        return [*self.interface_endpoints, self.s3_endpoint]

    @property
    def egress_ready(self) -> IDependable:
        """The private subnets' route to the NAT gateway (empty in isolated mode)."""
        return self.vpc.select_subnets(
            subnet_type=self.private_subnets.subnet_type
        ).internet_connectivity_established


def retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a day count (settings validated it is one)."""
    names = {
        1: "ONE_DAY",
        3: "THREE_DAYS",
        5: "FIVE_DAYS",
        7: "ONE_WEEK",
        14: "TWO_WEEKS",
        30: "ONE_MONTH",
        60: "TWO_MONTHS",
        90: "THREE_MONTHS",
        120: "FOUR_MONTHS",
        150: "FIVE_MONTHS",
        180: "SIX_MONTHS",
        365: "ONE_YEAR",
        400: "THIRTEEN_MONTHS",
        545: "EIGHTEEN_MONTHS",
        731: "TWO_YEARS",
        1827: "FIVE_YEARS",
        3653: "TEN_YEARS",
    }
    return logs.RetentionDays[names[days]]
