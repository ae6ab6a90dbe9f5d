"""The API Gateway REST API: one resource per arm, Lambda proxy integrations (event version 1.0).

Why REST (not HTTP API): the seed measured through a REST API, and a Lambda throttle reaches a
REST proxy client as 500, which the report counts as a failure just like the seed's non-2xx.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import nag
from infra.network import retention
from infra.settings import Settings


class Api(Construct):
    """``<ApiUrl>/<arm>`` for every arm, ANY method, access logs on, stage throttled."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: Mapping[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=settings.api_name,
            description="poolbench: one resource per arm",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Access logs need the account's API Gateway CloudWatch Logs role: without one (a
            # fresh account or region) the stage fails with "CloudWatch Logs role ARN must be
            # set in account settings to enable logging". The setting is account-wide and other
            # APIs may come to rely on it, so the role and the setting outlive the stack.
            cloud_watch_role=settings.api_gateway_cloud_watch_role,
            cloud_watch_role_removal_policy=(
                RemovalPolicy.RETAIN if settings.api_gateway_cloud_watch_role else None
            ),
            deploy_options=apigw.StageOptions(
                stage_name=settings.api_stage,
                metrics_enabled=True,
                throttling_rate_limit=settings.api_rate_limit,
                throttling_burst_limit=settings.api_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        # RestApi adds its own URL output; the stack's ApiUrl (the contract's name) replaces it.
        self.rest_api.node.try_remove_child("Endpoint")
        validator = self.rest_api.add_request_validator(
            "Validator", validate_request_parameters=True, validate_request_body=True
        )
        for arm, fn in functions.items():
            resource = self.rest_api.root.add_resource(arm)
            # The unqualified function ARN: for the managed arm Lambda routes it to
            # $LATEST.PUBLISHED (lambda-managed-instances-version-publishing).
            resource.add_method(
                "ANY", apigw.LambdaIntegration(fn, proxy=True), request_validator=validator
            )
        if settings.api_gateway_cloud_watch_role:
            nag.acknowledge(self.rest_api.node.try_find_child("CloudWatchRole"), nag.APIGW_LOGS)
        nag.acknowledge(
            self,
            "AwsSolutions-APIG3",
            "AwsSolutions-APIG4",
            "AwsSolutions-COG4",
            "AwsSolutions-APIG6",
        )

    @property
    def url(self) -> str:
        """``https://<id>.execute-api.<region>.amazonaws.com/<stage>/``."""
        return self.rest_api.url

    @property
    def stage_name(self) -> str:
        """The deployed stage's name."""
        return self.rest_api.deployment_stage.stage_name
