"""`poolbench local up`: the local stack in the foreground until Ctrl-C."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from loadtest.presets import PRESETS, get_preset
from local.settings import check_runtime
from local.stack import LocalStack, serve
from poolbench import stack_options as opt
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
    slots_per_ee: opt.PresetSlotsPerEE = None,
    min_ees: opt.MinEEs = opt.MANAGED_DEFAULTS.min_ees,
    max_ees: opt.MaxEEs = opt.MANAGED_DEFAULTS.max_ees,
    target_utilisation: opt.PresetTargetUtilisation = None,
    scale_delay: opt.ScaleDelay = opt.MANAGED_DEFAULTS.scale_delay_s,
    concurrency_limit: opt.ConcurrencyLimit = opt.STANDARD_DEFAULTS.concurrency_limit,
    idle_timeout: opt.IdleTimeout = opt.STANDARD_DEFAULTS.idle_timeout_s,
    pool_size: opt.PoolSize = opt.POOLER_DEFAULTS.default_pool_size,
    proxy_pool_size: opt.ProxyPoolSize = opt.PROXY_DEFAULTS.pool_size,
    max_connections: opt.MaxConnections = None,
) -> None:
    """Start PostgreSQL, the arms and the API Gateway front; serve until Ctrl-C.

    Example: poolbench local up --arms standard,managed,proxy --outputs-file outputs.json
    """
    if outputs_file is not None:
        outputs_file = check_output_file(outputs_file, "--outputs-file")
    if run_dir is not None:
        run_dir = check_folder(run_dir, "--run-dir")
    check_runtime(runtime)
    # local up serves whatever load comes: nothing to size max_connections by but the user.
    connections = opt.DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
    check_local_scale(connections, f"--max-connections {connections:,}", available_memory_kib())
    knobs = opt.StackKnobs(
        slots_per_ee=slots_per_ee,
        min_ees=min_ees,
        max_ees=max_ees,
        target_utilisation=target_utilisation,
        scale_delay=scale_delay,
        concurrency_limit=concurrency_limit,
        idle_timeout=idle_timeout,
        pool_size=pool_size,
        proxy_pool_size=proxy_pool_size,
        max_connections=connections,
    )
    settings = opt.build_stack_settings(
        knobs,
        run_dir=run_dir or Path("reports") / stamped_name("local-"),
        arms=arms,
        preset=get_preset(preset),
        max_connections=connections,
        gateway_port=port,
        runtime=runtime,
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
