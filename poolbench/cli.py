"""The `poolbench` command: every subcommand is registered here, implemented beside it.

Bad input of any kind (click's usage errors or our own InputError) ends in one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
import typer.core

# Typer >= 0.20 vendors Click; its exception classes live here (pinned by uv.lock).
from typer._click import exceptions as click_exc

from input_errors import InputError
from poolbench import __version__, cli_aws, cli_local, cli_report, cli_run, cli_sweep

_display_type = typer.core.TyperOption.display_type_rich


def _flag_shows_no_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """Typer labels every option with its type; `--help <bool>` reads as if it took a value."""
    return None if self.is_flag else _display_type(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_shows_no_type  # type: ignore[method-assign]
_usage_name = typer.core.TyperArgument._usage_display_name


def _argument_usage_name(self: typer.core.TyperArgument) -> str:
    """`poolbench report RUN_DIR`, as the README writes it, not Typer's `{RUN_DIR}`."""
    name = _usage_name(self)
    return name[1:-1] if name.startswith("{") and name.endswith("}") else name


typer.core.TyperArgument._usage_display_name = _argument_usage_name  # type: ignore[method-assign]

app = typer.Typer(
    name="poolbench",
    help=(
        "Benchmark standard Lambda vs Lambda Managed Instances sharing one PgBouncer layer, "
        "on AWS or on this machine.\n\n"
        "Example: poolbench run --preset seed   (the seed experiment, local, ends in a report)\n\n"
        "Example: poolbench local up --outputs-file outputs.json\n\n"
        "Example: poolbench report reports/2026-11-22T10-00-00Z"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


app.add_typer(cli_local.app, name="local")
app.add_typer(cli_aws.app, name="aws")
app.command("run")(cli_run.run)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"poolbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Benchmark standard Lambda vs Lambda Managed Instances sharing one PgBouncer layer."""


app.command("collect")(cli_report.collect)
app.command("report")(cli_report.report)
app.command("sweep")(cli_sweep.sweep)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, mapping user errors to one line and exit code 2, and AWS
    errors to one line and exit code 1 (2 for missing credentials)."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="poolbench")
    except click_exc.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    except click_exc.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        print(f"poolbench: error: {exc.format_message()}{hint}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"poolbench: error: {exc}", file=sys.stderr)
        return 2
    except typer.Abort:
        print("poolbench: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:  # an AWS error anywhere (run, collect, report): one line, no trace
        from poolbench.aws import aws_error_exit_code, aws_error_line

        line = aws_error_line(exc)
        if line is None:
            raise
        print(f"poolbench: error: {line}", file=sys.stderr)
        return aws_error_exit_code(exc)
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
