"""cdk-nag AwsSolutions findings this stack accepts, each with the reason it is accepted.

Why one module: an accepted finding is a design decision, so all of them sit in one reviewed
place, each scoped to the narrowest construct it is about. cdk-nag 3 uses CDK's own
``Validations.acknowledge``: one acknowledgment per finding (``AwsSolutions-IAM5[Resource::*]``
is its own finding), and any finding not acknowledged here fails ``cdk synth``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, CfnElement, Validations
from constructs import IConstruct

if TYPE_CHECKING:
    from infra.stack import PoolbenchStack


def _managed_policy(name: str) -> str:
    """The finding ID cdk-nag gives an AWS managed policy attached to a role."""
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"


_BASIC = _managed_policy("service-role/AWSLambdaBasicExecutionRole")
_VPC = _managed_policy("service-role/AWSLambdaVPCAccessExecutionRole")
_OPERATOR = _managed_policy("AWSLambdaManagedEC2ResourceOperator")
_APIGW_LOGS = _managed_policy("service-role/AmazonAPIGatewayPushToCloudWatchLogs")

REASONS: dict[str, str] = {
    "AwsSolutions-L1": (
        "python3.13 is pinned on purpose: the handler, the extension and the local stack are "
        "tested on 3.13, the lowest Python Lambda Managed Instances run, and every arm must "
        "share one runtime so only the execution model differs"
    ),
    _BASIC: (
        "AWS's Lambda logging policy; each function writes only to its own log group, created "
        "and retained by this stack"
    ),
    _VPC: (
        "AWS's Lambda ENI policy for VPC-attached functions; EC2 network-interface actions "
        "have no resource-level scoping to narrow it to"
    ),
    _OPERATOR: (
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
    _APIGW_LOGS: (
        "the managed policy the API Gateway guide prescribes for the account's CloudWatch Logs "
        "role (set-up-logging); API Gateway needs it to write this stack's access logs"
    ),
}


FRAMEWORK_INVOKE_REASON = (
    "the custom-resource provider framework invokes the role-setup function, qualified or not; "
    "the wildcard is only the version suffix of that one function's ARN"
)


def _ack(scope: IConstruct | None, *ids: str, reason: str | None = None) -> None:
    if scope is None:
        return
    Validations.of(scope).acknowledge(
        *(Acknowledgment(id=i, reason=reason or REASONS[i]) for i in ids)
    )


def suppress_reviewed_findings(stack: PoolbenchStack) -> None:
    """Acknowledge every accepted finding on the construct it concerns."""
    # Every function of the stack: runtime pin, AWS's logging policy.
    for scope in (stack.arms, stack.probe, stack.database):
        _ack(scope, "AwsSolutions-L1", _BASIC)
    for arm, fn in stack.arms.functions.items():
        if arm != "managed":
            _ack(fn, _VPC)
    _ack(stack.probe, _VPC)
    setup = stack.database.roles_setup_function
    _ack(setup, _VPC)
    if stack.arms.capacity_provider is not None:
        _ack(stack.arms.capacity_provider, _OPERATOR)

    _ack(stack.database, "AwsSolutions-SMG4")
    _ack(stack.database.cluster, "AwsSolutions-RDS10")
    # The custom-resource provider framework may invoke only the setup function (any version).
    framework = stack.database.roles_provider
    _ack(framework, framework_finding(stack), reason=FRAMEWORK_INVOKE_REASON)

    if stack.settings.api_gateway_cloud_watch_role:
        _ack(stack.api.rest_api.node.try_find_child("CloudWatchRole"), _APIGW_LOGS)
    _ack(
        stack.api,
        "AwsSolutions-APIG3",
        "AwsSolutions-APIG4",
        "AwsSolutions-COG4",
        "AwsSolutions-APIG6",
    )


def framework_finding(stack: PoolbenchStack) -> str:
    """The IAM5 finding ID of the provider framework's invoke permission on the setup function."""
    setup = stack.database.roles_setup_function.node.default_child
    assert isinstance(setup, CfnElement)
    return f"AwsSolutions-IAM5[Resource::<{stack.get_logical_id(setup)}.Arn>:*]"
