"""`poolbench local up`: the local stack in the foreground until Ctrl-C."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from input_errors import InputError
from loadtest.presets import PRESETS
from local.settings import (
    DEFAULT_SLOTS_PER_VCPU,
    ManagedSettings,
    PoolerSettings,
    ProxySettings,
    StandardSettings,
    check_runtime,
)
from local.stack import LocalStack, serve
from poolbench import stack_options as opt
from poolbench.cli_run import PRESET_STACK_KNOBS, SEED_SLOTS_PER_EE
from poolbench.input_checks import (
    available_memory_kib,
    check_folder,
    check_local_scale,
    check_output_file,
)
from poolbench.open_files import raise_soft_limit
from poolbench.progress import Ticker
from poolbench.run import stamped_name

app = typer.Typer(
    help="The local stack: real PostgreSQL, PgBouncer and Lambda runtimes.\n\n"
    "Example: poolbench local up --outputs-file outputs.json   (serve until Ctrl-C)",
    no_args_is_help=True,
)
console = Console(stderr=True, highlight=False)  # paths and run ids are not numbers

_M, _S, _P, _X = ManagedSettings(), StandardSettings(), PoolerSettings(), ProxySettings()


@app.command("up")
def up(
    outputs_file: Annotated[
        Path | None, typer.Option(help="Write the endpoints here, in cdk deploy's outputs shape.")
    ] = None,
    arms: opt.Arms = "standard,managed",
    runtime: opt.Runtime = "python",
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the stack's files (default reports/local-<time>)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Gateway port on 127.0.0.1 (0: any free port).")] = 0,
    preset: Annotated[
        str,
        typer.Option(
            help="Size the managed arm as `run --preset` does: seed gives 64 slots per EE, as"
            f" the seed's capacity provider; {', '.join(PRESETS)}.",
        ),
    ] = "seed",
    slots_per_ee: Annotated[
        int | None,
        typer.Option(
            help="Managed: requests per EE (PerExecutionEnvironmentMaxConcurrency; default: the"
            f" preset's, {SEED_SLOTS_PER_EE} for seed, {_M.slots_per_ee} otherwise).",
            rich_help_panel=opt.PANEL,
        ),
    ] = None,
    min_ees: opt.MinEEs = _M.min_ees,
    max_ees: opt.MaxEEs = _M.max_ees,
    target_utilisation: Annotated[
        float | None,
        typer.Option(
            help="Managed: the scaler's utilisation target, 0-1 (default: the preset's, 0.5 for"
            f" ramp, {_M.target_utilisation} otherwise).",
            rich_help_panel=opt.PANEL,
        ),
    ] = None,
    scale_delay: opt.ScaleDelay = _M.scale_delay_s,
    concurrency_limit: opt.ConcurrencyLimit = _S.concurrency_limit,
    idle_timeout: opt.IdleTimeout = _S.idle_timeout_s,
    pool_size: opt.PoolSize = _P.default_pool_size,
    proxy_pool_size: opt.ProxyPoolSize = _X.pool_size,
    max_connections: opt.MaxConnections = 2000,
) -> None:
    """Start PostgreSQL, the arms and the API Gateway front; serve until Ctrl-C.

    Example: poolbench local up --arms standard,managed,proxy --outputs-file outputs.json
    """
    if outputs_file is not None:
        outputs_file = check_output_file(outputs_file, "--outputs-file")
    if run_dir is not None:
        run_dir = check_folder(run_dir, "--run-dir")
    check_local_scale(
        max_connections, f"--max-connections {max_connections:,}", available_memory_kib()
    )
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    check_runtime(runtime)
    knobs = opt.knob_values(locals())
    for name, default in (
        ("slots_per_ee", DEFAULT_SLOTS_PER_VCPU[runtime]),
        ("target_utilisation", _M.target_utilisation),
    ):
        if knobs[name] is None:
            knobs[name] = PRESET_STACK_KNOBS.get(preset, {}).get(name, default)
    settings = opt.build_stack_settings(
        run_dir=run_dir or Path("reports") / stamped_name("local-"),
        arms=arms,
        gateway_port=port,
        runtime=runtime,
        **knobs,
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    soft, _ = raise_soft_limit()  # a load of many users needs more than 1024 descriptors
    console.print(f"starting the local stack in {settings.run_dir} (open-file limit {soft}) ...")

    starting = Ticker(console, "starting the local stack")

    def ready(stack: LocalStack) -> None:
        starting.stop()
        table = Table(title="poolbench local stack", show_header=True)
        table.add_column("arm")
        table.add_column("endpoint")
        for arm in stack.settings.arms:
            table.add_row(arm, f"{stack.api_url}{arm}")
        table.add_row("metrics", f"{stack.api_url}_poolbench/metrics")
        console.print(table)
        if outputs_file:
            console.print(f"outputs written to {outputs_file}")
        console.print("serving; press Ctrl-C to stop")

    with starting:
        serve(settings, outputs_file, ready)
    console.print("stopped; nothing left running")
