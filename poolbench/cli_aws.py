"""`poolbench aws ...`: commands about the AWS account, before and around a deploy."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from input_errors import InputError

app = typer.Typer(help="The AWS account: what a deploy and a run need.", no_args_is_help=True)


@app.command()
def preflight(
    region: Annotated[
        str | None,
        typer.Option(help="Region to check (default: the shell's, as `cdk deploy` uses)."),
    ] = None,
    users: Annotated[
        int, typer.Option(help="Users per arm the runs will drive (the seed: 100).")
    ] = 100,
    context: Annotated[
        list[str] | None,
        typer.Option("-c", "--context", help="The deploy's -c key=value overrides."),
    ] = None,
) -> int:
    """Check the account and this machine for a deploy: ✓/✗ per prerequisite, with the fix.

    Example: poolbench aws preflight --region eu-west-1 -c maxVcpuCount=32
    """
    from poolbench.aws import shell_region
    from poolbench.preflight import Clients, cdk_context, run_checks, settings_from_context

    chosen = region or shell_region()
    if not chosen:
        raise InputError("no AWS region: pass --region, or set AWS_REGION or a profile's region")
    if users < 1:
        raise InputError(f"--users must be at least 1, not {users}")
    settings = settings_from_context(chosen, users, cdk_context(context or []))
    checks = run_checks(settings, Clients.for_region(chosen))
    table = Table(title=f"poolbench aws preflight: {chosen}, arms {', '.join(settings.arms)}")
    for column in ("", "check", "found", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(check.mark, check.name, check.detail, check.fix)
    Console(width=max(Console().width, 140)).print(table)
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        typer.echo(f"preflight: {len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        return 1
    return 0
