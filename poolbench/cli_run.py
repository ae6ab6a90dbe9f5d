"""`poolbench run`: the whole experiment in one command, on the local stack or on AWS."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from loadtest.presets import PRESETS, get_preset, resolve_scenario
from loadtest.target import load_target, parse_arms
from local.faults import parse_fault
from local.settings import ManagedSettings, PoolerSettings, ProxySettings, StandardSettings
from poolbench import stack_options as opt
from poolbench.errors import InputError
from poolbench.open_files import descriptors_needed, ensure_open_files
from poolbench.run import RunFailed, RunRequest, execute

console = Console(stderr=True)
_M, _S, _P, _X = ManagedSettings(), StandardSettings(), PoolerSettings(), ProxySettings()
# Local stack knobs a preset sets unless the user gives them. seed: the source experiment's
# capacity provider let 64 requests share one EE (its ExecutionEnvironmentConcurrencyLimit); the
# others keep Python's 16 per vCPU. ramp: AWS says traffic that more than doubles within the
# scaling window may be throttled; a 50% target is the headroom that absorbs one doubling.
PRESET_STACK_KNOBS: dict[str, dict[str, Any]] = {
    "seed": {"slots_per_ee": 64},
    "failover": {"slots_per_ee": 64},
    "ramp": {"target_utilisation": 0.5},
}
SEED_SLOTS_PER_EE = PRESET_STACK_KNOBS["seed"]["slots_per_ee"]
TARGETS = ("local", "aws")
SCHEDULES = ("parallel", "sequential")


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _latency_source(arms: list[Any]) -> str:
    """'exact per-request records' or Locust's buckets (a run folder made before records)."""
    exact = all(a.latency_source.startswith("requests") for a in arms)
    return "exact per-request records" if exact else "Locust's 100 ms buckets"


def print_summary_table(run_dir: Path) -> None:
    """The closing table per arm, from the same numbers as summary.json."""
    from analysis.summary import summarize

    summary = summarize(run_dir, write=False)
    table = Table(
        title=f"poolbench {summary.run_id} ({summary.target}); latency in ms, peaks per arm",
        caption="DB/conc: peak DB connections per peak concurrent request; latency over "
        f"successful requests, from {_latency_source(summary.arms)}",
    )
    table.add_column("arm", no_wrap=True)
    for column in (
        "reqs",
        "fail",
        "min",
        "p50",
        "p95",
        "p99",
        "max",
        "conc",
        "EEs",
        "DB",
        "DB/conc",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for arm in summary.arms:
        table.add_row(
            arm.arm,
            _fmt(arm.requests),
            _fmt(arm.failures),
            _fmt(arm.min_ms),
            _fmt(arm.p50_ms),
            _fmt(arm.p95_ms),
            _fmt(arm.p99_ms),
            _fmt(arm.max_ms),
            _fmt(arm.peak_concurrency),
            _fmt(arm.peak_execution_environments),
            _fmt(arm.peak_db_connections),
            _fmt(arm.db_connections_per_concurrent_request, 2),
        )
    out = Console(width=max(Console().width, 110))  # the table is wider than 80 columns
    out.print(table)
    out.print(summary.verdict)


def run(
    target: Annotated[
        str, typer.Option(help="local (this machine) or aws (a deployed stack).")
    ] = "local",
    preset: Annotated[str, typer.Option(help=f"Scenario preset: {', '.join(PRESETS)}.")] = "seed",
    users: Annotated[int | None, typer.Option(help="Users per arm (ab -c).")] = None,
    requests: Annotated[
        int | None, typer.Option("--requests", help="Requests per arm, exactly (ab -n).")
    ] = None,
    duration: Annotated[int | None, typer.Option(help="Run for this many seconds instead.")] = None,
    sleep_ms: Annotated[int | None, typer.Option(help="Handler sleep while holding (ms).")] = None,
    queries: Annotated[int | None, typer.Option(help="Queries per request.")] = None,
    hold: Annotated[
        bool | None, typer.Option("--hold/--no-hold", help="Hold one connection per request.")
    ] = None,
    arms: Annotated[
        str | None, typer.Option(help="Arms to drive (default: local standard,managed; aws: all).")
    ] = None,
    schedule: Annotated[
        str, typer.Option(help="parallel: arms at once; sequential: one arm after another.")
    ] = "parallel",
    processes: Annotated[int, typer.Option(help="Locust processes (load from several cores).")] = 1,
    spawn_rate: Annotated[float | None, typer.Option(help="Users started per second.")] = None,
    out: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("reports"),
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="local: break something this many seconds into the load, KIND@SECONDS"
            " (repeatable): db-restart, pooler-kill, runtime-kill. Example: db-restart@20.",
        ),
    ] = None,
    outputs_file: Annotated[
        Path | None, typer.Option(help="aws: the file `cdk deploy --outputs-file` wrote.")
    ] = None,
    stack: Annotated[str | None, typer.Option(help="aws: the stack in the outputs file.")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Build the report.")] = True,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="aws: wait until CloudWatch has published the run's last period (up to 5 min).",
        ),
    ] = True,
    slots_per_ee: Annotated[
        int | None,
        typer.Option(
            help=f"Managed: requests per EE (default {SEED_SLOTS_PER_EE} for the seed preset, "
            f"as the seed's capacity provider; {_M.slots_per_ee} otherwise).",
            rich_help_panel=opt.PANEL,
        ),
    ] = None,
    min_ees: opt.MinEEs = _M.min_ees,
    max_ees: opt.MaxEEs = _M.max_ees,
    target_utilisation: Annotated[
        float | None,
        typer.Option(
            help=f"Managed: the scaler's utilisation target, 0-1 (default 0.5 for the ramp "
            f"preset, {_M.target_utilisation} otherwise).",
            rich_help_panel=opt.PANEL,
        ),
    ] = None,
    scale_delay: opt.ScaleDelay = _M.scale_delay_s,
    concurrency_limit: opt.ConcurrencyLimit = _S.concurrency_limit,
    idle_timeout: opt.IdleTimeout = _S.idle_timeout_s,
    pool_size: opt.PoolSize = _P.default_pool_size,
    proxy_pool_size: opt.ProxyPoolSize = _X.pool_size,
    max_connections: opt.MaxConnections = 2000,
) -> int:
    """Run the experiment: start the target, drive every arm with equal load, collect, report.

    Example: poolbench run --preset seed            (the seed experiment on this machine)
    Example: poolbench run --preset smoke --arms standard,managed,proxy
    Example: poolbench run --target aws --outputs-file cdk-outputs.json
    """
    if target not in TARGETS:
        raise InputError(f"--target must be local or aws, not {target!r}")
    if schedule not in SCHEDULES:
        raise InputError(f"--schedule must be parallel or sequential, not {schedule!r}")
    stack_settings = None
    aws_target = None
    if target == "aws":
        if outputs_file is None:
            raise InputError("--target aws needs --outputs-file (the file cdk deploy wrote)")
        aws_target = load_target(outputs_file, stack)
        target_arms = aws_target.arms
    else:
        if outputs_file is not None:
            raise InputError("--outputs-file is for --target aws; the local target makes its own")
        target_arms = parse_arms(arms or "standard,managed", where="--arms")
    scenario = resolve_scenario(
        preset,
        target_arms=target_arms,
        arms=arms if target == "aws" else None,
        users=users,
        requests_per_arm=requests,
        duration_s=duration,
        spawn_rate=spawn_rate,
        sleep_ms=sleep_ms,
        queries=queries,
        hold=hold,
        processes=processes,
    )
    if target == "local":
        knobs = opt.knob_values(locals())
        preset_knobs = PRESET_STACK_KNOBS.get(preset, {})
        for name, default in (
            ("slots_per_ee", _M.slots_per_ee),
            ("target_utilisation", _M.target_utilisation),
        ):
            if knobs[name] is None:
                knobs[name] = preset_knobs.get(name, default)
        # Room for every user's connection on every arm, whatever the knob says.
        knobs["max_connections"] = max(max_connections, 2 * scenario.total_users + 50)
        stack_settings = opt.build_stack_settings(
            run_dir=out,
            arms=",".join(scenario.arms),
            **knobs,  # the run places it in its folder
        )
    faults = tuple(parse_fault(f) for f in (fault or get_preset(preset).faults))
    if faults and target == "aws":
        raise InputError(
            "--fault is for the local target only so far: on AWS, reboot the writer instance"
            " yourself (aws rds reboot-db-instance) during the run"
        )
    ensure_open_files(descriptors_needed(stack_settings, scenario.users))
    request = RunRequest(
        target=target,
        scenario=scenario,
        out_root=out,
        argv=sys.argv[1:] if sys.argv[1:2] == ["run"] else ["run"],
        stack=stack_settings,
        aws_target=aws_target,
        schedule=schedule,
        report=report,
        wait_for_metrics=wait,
        faults=faults,
    )
    try:
        outcome = execute(request, console)
    except KeyboardInterrupt:
        console.print("interrupted: the run folder keeps what was written; nothing left running")
        return 130
    except RunFailed as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    if outcome.report is not None:
        print_summary_table(outcome.run_dir)
        console.print(f"report: {outcome.report}")
    else:
        console.print(f"run folder: {outcome.run_dir}")
    return 0
