"""`poolbench collect` and `poolbench report`: thin CLI edges over analysis.collect/report.

They only parse options and print the resulting path; InputError from below reaches
poolbench.cli.main, which prints it as one line and exits 2. The analysis stack (pandas,
matplotlib) is imported inside the commands so other commands start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from functions.contract import TARGETS
from input_errors import InputError

RunDir = Annotated[
    Path,
    typer.Argument(metavar="RUN_DIR", help="The run folder, e.g. reports/2026-11-22T10-00-00Z."),
]


def collect(
    run_dir: RunDir,
    target: Annotated[
        str | None,
        typer.Option("--target", help="local|aws; default: the target in manifest.json."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Wait until CloudWatch has published the last period (at most 15 min after "
            "the load; stops as soon as it has).",
        ),
    ] = True,
) -> None:
    """Collect the run window's metrics into <RUN_DIR>/metrics.csv.

    Example: poolbench collect reports/2026-11-22T10-00-00Z --target aws
    """
    if target is not None and target not in TARGETS:
        raise InputError(f"--target must be one of {', '.join(TARGETS)}, not {target!r}")
    from analysis.collect import collect as collect_metrics

    try:
        path = collect_metrics(run_dir, target=target, wait=wait)
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: nothing written; collect later with `poolbench collect {run_dir}"
            f"{' --target ' + target if target else ''}`, then `poolbench report {run_dir}`",
            err=True,
        )
        raise
    typer.echo(str(path))


def report(run_dir: RunDir) -> None:
    """Build summary.json, charts and a self-contained report.html; print the report's path.

    Collects from the run's samples first when metrics.csv is missing. Safe to run again.

    Example: poolbench report reports/2026-11-22T10-00-00Z
    """
    from analysis.report import build_report

    if (run_dir / "sweep.json").is_file():  # a `poolbench sweep` folder: sweep.csv + sweep.html
        from analysis.sweep_report import build_sweep_report

        typer.echo(str(build_sweep_report(run_dir)))
        return
    typer.echo(str(build_report(run_dir)))
