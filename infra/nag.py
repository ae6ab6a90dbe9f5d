"""cdk-nag AwsSolutions findings this stack accepts, each with the reason it is accepted.

Why one module of reasons: an accepted finding is a design decision, so every reason sits in one
reviewed place. Each construct acknowledges its own findings (``acknowledge(self, ...)`` at the
end of its constructor), scoped to the narrowest construct they are about, so this module
imports no construct and the import graph has no cycle. cdk-nag 3 uses CDK's own
``Validations.acknowledge``: one acknowledgment per finding (``AwsSolutions-IAM5[Resource::*]``
is its own finding), and any finding not acknowledged fails ``cdk synth``.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct


def _managed_policy(name: str) -> str:
    """The finding ID cdk-nag gives an AWS managed policy attached to a role."""
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"


BASIC = _managed_policy("service-role/AWSLambdaBasicExecutionRole")
VPC = _managed_policy("service-role/AWSLambdaVPCAccessExecutionRole")
OPERATOR = _managed_policy("AWSLambdaManagedEC2ResourceOperator")
APIGW_LOGS = _managed_policy("service-role/AmazonAPIGatewayPushToCloudWatchLogs")
RUNTIME_PIN = "AwsSolutions-L1"

REASONS: dict[str, str] = {
    "AwsSolutions-L1": (
        "python3.13 is pinned on purpose: the handler, the extension and the local stack are "
        "tested on 3.13, the lowest Python Lambda Managed Instances run, and every arm must "
        "share one runtime so only the execution model differs"
    ),
    BASIC: (
        "AWS's Lambda logging policy; each function writes only to its own log group, created "
        "and retained by this stack"
    ),
    VPC: (
        "AWS's Lambda ENI policy for VPC-attached functions; EC2 network-interface actions "
        "have no resource-level scoping to narrow it to"
    ),
    OPERATOR: (
        "the managed policy the Lambda Managed Instances guide prescribes for a capacity "
        "provider's operator role (lambda-managed-instances-operator-role)"
    ),
    "AwsSolutions-SMG4": (
        "no rotation: a rotated password would break every running PgBouncer mid-benchmark; "
        "the secrets live only as long as this disposable stack"
    ),
    "AwsSolutions-RDS10": (
        "a benchmark database holding no data worth keeping; cdk destroy must remove it so "
        "nothing keeps billing"
    ),
    "AwsSolutions-APIG3": (
        "no WAF: a short-lived benchmark endpoint; a web ACL would add latency and cost to the "
        "very requests being measured; the stage is throttled instead"
    ),
    "AwsSolutions-APIG4": (
        "the load generator calls the arms without credentials, like the seed's ab; the API "
        "lives only while a benchmark runs, and the stage is throttled (apiRateLimit)"
    ),
    "AwsSolutions-COG4": "see AwsSolutions-APIG4: unauthenticated benchmark endpoint by design",
    "AwsSolutions-APIG6": (
        "no execution logging: API Gateway writes it to a log group it creates itself "
        "(API-Gateway-Execution-Logs_<api id>/<stage>), which cdk destroy cannot remove; "
        "JSON access logs to this stack's own log group are on for every request"
    ),
    APIGW_LOGS: (
        "the managed policy the API Gateway guide prescribes for the account's CloudWatch Logs "
        "role (set-up-logging); API Gateway needs it to write this stack's access logs"
    ),
}


FRAMEWORK_INVOKE_REASON = (
    "the custom-resource provider framework invokes the role-setup function, qualified or not; "
    "the wildcard is only the version suffix of that one function's ARN"
)


def acknowledge(scope: IConstruct | None, *ids: str, reason: str | None = None) -> None:
    """Accept findings on ``scope`` (and what it holds), each with its reviewed reason."""
    if scope is None:
        return
    Validations.of(scope).acknowledge(
        *(Acknowledgment(id=i, reason=reason or REASONS[i]) for i in ids)
    )


def framework_finding(setup_function: IConstruct) -> str:
    """The IAM5 finding ID of the provider framework's invoke permission on the setup function."""
    setup = setup_function.node.default_child
    assert isinstance(setup, CfnElement)
    return f"AwsSolutions-IAM5[Resource::<{Stack.of(setup).get_logical_id(setup)}.Arn>:*]"
