"""Everything `run --target aws` checks before the load, and one line for every AWS error.

Why here and not in each caller: the run, `collect`, `report` and `aws preflight` must agree on
which Region a client talks to (the stack's, always), on how long an unreachable endpoint may
take (seconds, not botocore's minute of retries), and on how an AWS failure reads (one line
naming the fix). boto3 is imported only inside functions, so local commands start fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from input_errors import InputError

if TYPE_CHECKING:
    import boto3

# A check must answer in seconds: connect 5 s, read 10 s, two attempts in all.
CHECK_CONNECT_TIMEOUT_S = 5
CHECK_READ_TIMEOUT_S = 10
CHECK_MAX_ATTEMPTS = 2

CREDENTIALS_FIX = (
    "configure AWS credentials (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID/"
    "AWS_SECRET_ACCESS_KEY) for the account the stack is deployed in"
)


class AwsSetupError(InputError):
    """The shell's AWS setup cannot serve the run (credentials, endpoint): exit 2, one line."""


def shell_region() -> str | None:
    """The Region the shell would pick on its own (environment, then the profile's config)."""
    env = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if env:
        return env
    try:
        import boto3

        return boto3.session.Session().region_name
    except Exception:  # a broken profile is reported by the credential check, not here
        return None


def region_note(stack_region: str) -> str | None:
    """One line when the shell's Region differs from the stack's (the stack's wins)."""
    shell = shell_region()
    if shell and shell != stack_region:
        return (
            f"note: the shell's AWS region is {shell}; using the stack's region {stack_region} "
            "(from the outputs file) for every AWS call"
        )
    return None


def session(region: str) -> boto3.session.Session:
    """A session pinned to the stack's Region; credentials, profile and AWS_ENDPOINT_URL as
    boto3 resolves them."""
    import boto3

    return boto3.session.Session(region_name=region)


def check_config() -> Any:
    """botocore Config for checks: short timeouts, two attempts (an unreachable endpoint
    answers in about 10 s instead of botocore's default minute)."""
    from botocore.config import Config

    return Config(
        connect_timeout=CHECK_CONNECT_TIMEOUT_S,
        read_timeout=CHECK_READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": CHECK_MAX_ATTEMPTS},
    )


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str


def check_credentials(region: str, client: Any = None) -> Identity:
    """STS GetCallerIdentity in the stack's Region: credentials exist, are valid, and the
    endpoint is reachable. Raises AwsSetupError (one line, exit 2) otherwise."""
    try:
        sts = client or session(region).client("sts", config=check_config())
        answer = sts.get_caller_identity()
    except Exception as exc:
        line = aws_error_line(exc)
        if line is None:
            raise
        raise AwsSetupError(
            f"AWS credentials check (STS GetCallerIdentity) failed: {line}"
        ) from None
    return Identity(account=str(answer.get("Account", "")), arn=str(answer.get("Arn", "")))


def aws_error_line(exc: BaseException) -> str | None:
    """One line for an AWS error (botocore's), naming the fix; None if `exc` is not one."""
    if not type(exc).__module__.startswith(("botocore", "boto3")):
        return None
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return f"no AWS credentials found: {CREDENTIALS_FIX}"
    if isinstance(exc, bx.ProfileNotFound):
        return f"{exc}: set AWS_PROFILE to a profile in ~/.aws/config, or unset it"
    if isinstance(exc, bx.NoRegionError):
        return "no AWS region: the outputs file's Region is used; pass an outputs file with one"
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        return (
            f"cannot reach {endpoint}: check the network, a proxy, or AWS_ENDPOINT_URL "
            f"({os.environ.get('AWS_ENDPOINT_URL') or 'not set'})"
        )
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        message = " ".join(str(error.get("Message", "")).split())
        operation = getattr(exc, "operation_name", "the call")
        fix = _CLIENT_ERROR_FIXES.get(str(code), "check the stack and the account's permissions")
        return f"AWS refused {operation}: {code}: {message} ({fix})"
    return f"AWS error: {type(exc).__name__}: {' '.join(str(exc).split())}"


_CLIENT_ERROR_FIXES = {
    "ExpiredToken": "refresh the session credentials",
    "ExpiredTokenException": "refresh the session credentials",
    "InvalidClientTokenId": CREDENTIALS_FIX,
    "SignatureDoesNotMatch": CREDENTIALS_FIX,
    "UnrecognizedClientException": CREDENTIALS_FIX,
    "AccessDenied": "grant the caller the permission named above",
    "AccessDeniedException": "grant the caller the permission named above",
    "ResourceNotFoundException": "is the stack deployed in this region? redeploy or fix --stack",
    "Throttling": "retry in a minute",
    "ThrottlingException": "retry in a minute",
}


def aws_error_exit_code(exc: BaseException) -> int:
    """2 for setup the user fixes before anything can run (credentials, profile, region); 1
    for an AWS call that failed."""
    from botocore import exceptions as bx

    setup = (
        bx.NoCredentialsError,
        bx.PartialCredentialsError,
        bx.ProfileNotFound,
        bx.NoRegionError,
    )
    return 2 if isinstance(exc, setup) else 1


def outputs_region(outputs: Mapping[str, str], where: str) -> str:
    """The stack's Region from its outputs (a required key on AWS)."""
    region = outputs.get("Region", "").strip()
    if not region or region == "local":
        raise InputError(f"{where}: no AWS Region output (redeploy the stack)")
    return region
