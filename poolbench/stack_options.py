"""The local stack's knobs as CLI options, shared by `local up` and `run`, and the one
function that turns them into StackSettings (validated: bad knobs exit 2 with one line)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from functions import contract
from loadtest.target import parse_arms
from local.settings import (
    RUNTIMES,
    ManagedSettings,
    PoolerSettings,
    ProxySettings,
    StackSettings,
    StandardSettings,
)

PANEL = "Local stack knobs (each mirrors an AWS setting)"

Arms = Annotated[
    str, typer.Option("--arms", help=f"Comma-separated arms: {', '.join(contract.ARMS)}.")
]
Runtime = Annotated[
    str,
    typer.Option(
        help=f"The function under test on every arm: {' or '.join(RUNTIMES)} (the Node.js "
        "handler on pg under aws-lambda-ric; on AWS: cdk deploy -c runtime=nodejs).",
    ),
]
SlotsPerEE = Annotated[
    int,
    typer.Option(
        help="Managed: requests per EE (PerExecutionEnvironmentMaxConcurrency).",
        rich_help_panel=PANEL,
    ),
]
MinEEs = Annotated[
    int,
    typer.Option(
        help="Managed: EEs ready before traffic (MinExecutionEnvironments).", rich_help_panel=PANEL
    ),
]
MaxEEs = Annotated[
    int, typer.Option(help="Managed: EE cap (MaxExecutionEnvironments).", rich_help_panel=PANEL)
]
TargetUtilisation = Annotated[
    float,
    typer.Option(help="Managed: the scaler's utilisation target, 0-1.", rich_help_panel=PANEL),
]
ScaleDelay = Annotated[
    float, typer.Option(help="Managed: seconds before the scaler reacts.", rich_help_panel=PANEL)
]
ConcurrencyLimit = Annotated[
    int, typer.Option(help="Standard: the account's concurrency limit.", rich_help_panel=PANEL)
]
IdleTimeout = Annotated[
    float,
    typer.Option(help="Standard: seconds before an idle EE is reaped.", rich_help_panel=PANEL),
]
PoolSize = Annotated[
    int,
    typer.Option(
        help="In-EE PgBouncer default_pool_size (DEFAULT_POOL_SIZE).", rich_help_panel=PANEL
    ),
]
ProxyPoolSize = Annotated[
    int,
    typer.Option(
        help="Proxy arm: the shared pooler's pool size (RDS Proxy stand-in).", rich_help_panel=PANEL
    ),
]
MaxConnections = Annotated[
    int, typer.Option(help="PostgreSQL max_connections (Aurora's, by ACU).", rich_help_panel=PANEL)
]


KNOBS = (
    "slots_per_ee",
    "min_ees",
    "max_ees",
    "target_utilisation",
    "scale_delay",
    "concurrency_limit",
    "idle_timeout",
    "pool_size",
    "proxy_pool_size",
    "max_connections",
)


def knob_values(command_args: dict[str, Any]) -> dict[str, Any]:
    """The knob options out of a command's arguments (its locals()), so every command that
    takes the knobs passes them on the same way."""
    return {name: command_args[name] for name in KNOBS}


def build_stack_settings(
    *,
    run_dir: Path,
    arms: str,
    slots_per_ee: int,
    min_ees: int,
    max_ees: int,
    target_utilisation: float,
    scale_delay: float,
    concurrency_limit: int,
    idle_timeout: float,
    pool_size: int,
    proxy_pool_size: int,
    max_connections: int,
    gateway_port: int = 0,
    runtime: str = "python",
) -> StackSettings:
    return StackSettings(
        run_dir=run_dir,
        arms=parse_arms(arms, where="--arms"),
        standard=StandardSettings(concurrency_limit=concurrency_limit, idle_timeout_s=idle_timeout),
        managed=ManagedSettings(
            slots_per_ee=slots_per_ee,
            min_ees=min_ees,
            max_ees=max_ees,
            target_utilisation=target_utilisation,
            scale_delay_s=scale_delay,
        ),
        proxy=ProxySettings(pool_size=proxy_pool_size),
        pooler=PoolerSettings(default_pool_size=pool_size),
        max_connections=max_connections,
        gateway_port=gateway_port,
        runtime=runtime,
    ).validate()
