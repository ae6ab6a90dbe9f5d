"""The local stack's knobs as CLI options, shared by `local up`, `run` and `sweep`; the typed
StackKnobs they fill, and the one function that turns those into StackSettings (validated: bad
knobs exit 2 with one line)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from functions import contract
from loadtest.presets import PRESETS, SEED, Preset
from loadtest.target import parse_arms
from local.settings import (
    DEFAULT_SLOTS_PER_VCPU,
    RUNTIMES,
    ManagedSettings,
    PoolerSettings,
    ProxySettings,
    StackSettings,
    StandardSettings,
)

T = TypeVar("T")
PANEL = "Local stack knobs (each mirrors an AWS setting)"

# The stack's own defaults, which the options show and fall back to.
MANAGED_DEFAULTS = ManagedSettings()
STANDARD_DEFAULTS = StandardSettings()
POOLER_DEFAULTS = PoolerSettings()
PROXY_DEFAULTS = ProxySettings()
DEFAULT_MAX_CONNECTIONS = StackSettings.max_connections

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
PresetSlotsPerEE = Annotated[
    int | None,
    typer.Option(
        "--slots-per-ee",
        help="Managed: requests per EE (PerExecutionEnvironmentMaxConcurrency; default: the"
        f" preset's, {SEED.slots_per_ee} for seed as the seed's capacity provider; otherwise"
        " the runtime's per vCPU: "
        + ", ".join(f"{r} {n}" for r, n in DEFAULT_SLOTS_PER_VCPU.items())
        + ").",
        rich_help_panel=PANEL,
    ),
]
PresetTargetUtilisation = Annotated[
    float | None,
    typer.Option(
        "--target-utilisation",
        help="Managed: the scaler's utilisation target, 0-1 (default: the preset's,"
        f" {PRESETS['ramp'].target_utilisation} for ramp,"
        f" {MANAGED_DEFAULTS.target_utilisation} otherwise).",
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
    int | None,
    typer.Option(
        help="PostgreSQL max_connections (Aurora's, by ACU; default"
        f" {DEFAULT_MAX_CONNECTIONS:,}, or what the load needs when that is more).",
        rich_help_panel=PANEL,
    ),
]


@dataclass(frozen=True)
class StackKnobs:
    """The local stack's knobs as a command was given them. None: the default applies, which
    for slots_per_ee and target_utilisation is the preset's (or the stack's), and for
    max_connections what the command's load needs (see poolbench.cli_run). Field names are
    the options' parameter names (`--slots-per-ee` is `slots_per_ee`)."""

    slots_per_ee: int | None = None
    min_ees: int = MANAGED_DEFAULTS.min_ees
    max_ees: int = MANAGED_DEFAULTS.max_ees
    target_utilisation: float | None = None
    scale_delay: float = MANAGED_DEFAULTS.scale_delay_s
    concurrency_limit: int = STANDARD_DEFAULTS.concurrency_limit
    idle_timeout: float = STANDARD_DEFAULTS.idle_timeout_s
    pool_size: int = POOLER_DEFAULTS.default_pool_size
    proxy_pool_size: int = PROXY_DEFAULTS.pool_size
    max_connections: int | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def build_stack_settings(
    knobs: StackKnobs,
    *,
    run_dir: Path,
    arms: str,
    preset: Preset,
    max_connections: int,
    gateway_port: int = 0,
    runtime: str = "python",
) -> StackSettings:
    """StackSettings from the knobs: the preset's slots per EE and scaler target where the
    user gave none, then the runtime's default slots per EE (Python 16, Node.js 64 per vCPU)
    and the stack's default target; `max_connections` as the caller settled
    it (the knobs' own, or what the load needs)."""
    slots = _first(knobs.slots_per_ee, preset.slots_per_ee, DEFAULT_SLOTS_PER_VCPU[runtime])
    utilisation = _first(
        knobs.target_utilisation, preset.target_utilisation, MANAGED_DEFAULTS.target_utilisation
    )
    return StackSettings(
        run_dir=run_dir,
        arms=parse_arms(arms, where="--arms"),
        standard=StandardSettings(
            concurrency_limit=knobs.concurrency_limit, idle_timeout_s=knobs.idle_timeout
        ),
        managed=ManagedSettings(
            slots_per_ee=slots,
            min_ees=knobs.min_ees,
            max_ees=knobs.max_ees,
            target_utilisation=utilisation,
            scale_delay_s=knobs.scale_delay,
        ),
        proxy=ProxySettings(pool_size=knobs.proxy_pool_size),
        pooler=PoolerSettings(default_pool_size=knobs.pool_size),
        max_connections=max_connections,
        gateway_port=gateway_port,
        runtime=runtime,
    ).validate()


def _first(*values: T | None) -> T:
    """The first value given (0 is a value: validate() refuses it, a fallback would hide it)."""
    return next(v for v in values if v is not None)
