"""`poolbench run`: the whole experiment in one command, on the local stack or on AWS."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import typer
from rich.console import Console
from rich.table import Table

from functions import contract
from functions.contract import TARGETS
from input_errors import InputError
from loadtest.presets import PRESETS, Scenario, get_preset, resolve_scenario
from loadtest.target import Target, load_target, parse_arms
from local.execution_environment import EESettings
from local.faults import Fault, parse_fault
from local.settings import StackSettings, check_runtime
from poolbench import stack_options as opt
from poolbench.aws_faults import check_aws_faults
from poolbench.aws_target import check_aws_run, check_sleep_fits
from poolbench.input_checks import available_memory_kib, check_folder, check_local_scale
from poolbench.open_files import descriptors_needed, ensure_open_files
from poolbench.run import (
    DEFAULT_MAX_FAILURE_RATE,
    SLOWABLE_PHASES,
    AwsRun,
    LocalRun,
    RunFailed,
    RunRequest,
    SlowPhase,
    execute,
)

console = Console(stderr=True, highlight=False)  # paths and run ids are not numbers
SCHEDULES = ("parallel", "sequential")
# What each local-stack knob is on AWS: a deploy-time setting (-c), or nothing this CLI sets.
AWS_EQUIVALENT = {
    "slots_per_ee": "deploy with -c perEnvironmentMaxConcurrency=N",
    "min_ees": "deploy with -c minExecutionEnvironments=N",
    "max_ees": "deploy with -c maxExecutionEnvironments=N",
    "target_utilisation": "Lambda's own scaler decides; there is no setting for it",
    "scale_delay": "Lambda's own scaler decides; there is no setting for it",
    "concurrency_limit": "it is the account's Lambda concurrency quota (Service Quotas)",
    "idle_timeout": "Lambda reaps idle environments itself",
    "pool_size": "deploy with -c defaultPoolSize=N",
    "proxy_pool_size": "RDS Proxy sizes its pool from the database's max_connections",
    "max_connections": "deploy with -c maxAcu=N (Aurora's max_connections follows capacity)",
}


def refuse_local_knobs(ctx: typer.Context) -> None:
    """A local-stack knob given with --target aws would be silently meaningless: refuse it."""
    from typer._click.core import ParameterSource

    for name in opt.StackKnobs.names():
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            flag = "--" + name.replace("_", "-")
            raise InputError(
                f"{flag} sets the local stack and does nothing on --target aws: "
                f"{AWS_EQUIVALENT[name]}"
            )


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _latency_source(arms: list[Any]) -> str:
    """'exact per-request records' or Locust's buckets (a run folder made before records)."""
    exact = all(a.latency_source.startswith("requests") for a in arms)
    return "exact per-request records" if exact else "Locust's 100 ms buckets"


def print_summary_table(run_dir: Path) -> None:
    """The closing table per arm, from the same numbers as summary.json; a failed run's
    reason comes first, so nobody reads the table without it."""
    from analysis.summary import summarize

    summary = summarize(run_dir, write=False)
    table = Table(
        title=f"poolbench {summary.run_id} ({summary.target}, {summary.runtime}); latency in ms,"
        " peaks per arm",
        caption="EEs: most EEs serving in one second (from the responses); thr: Lambda "
        "throttles; DB/conc: peak DB connections per peak concurrent request; latency over "
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
        "thr",
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
            _fmt(arm.peak_execution_environments_serving),
            _fmt(arm.throttles),
            _fmt(arm.peak_db_connections),
            # no success: the ratio says nothing about pooling
            _fmt(arm.db_connections_per_concurrent_request if arm.successes > 0 else None, 2),
        )
    out = Console(width=max(Console().width, 110), highlight=False)  # wider than 80 columns
    if summary.failure:
        out.print(f"[red]run failed: {summary.failure}[/]", soft_wrap=True)
    out.print(table)
    if summary.missing_metrics:
        out.print(f"missing from CloudWatch: {', '.join(summary.missing_metrics)}", soft_wrap=True)
    for warning in summary.warnings:
        if "was throttled" in warning:
            out.print(warning, highlight=False)
    out.print(summary.verdict)


def connections_needed(scenario: Scenario) -> tuple[int, str]:
    """The max_connections a load needs on the local stack, and why: room for every user's
    connection on every arm (2 per user: a standard EE's, and one more while it is replaced)
    plus 50 for the recorder and PostgreSQL's own."""
    why = f"--users {scenario.users:,} x {len(scenario.arms)} arms (2 connections per user + 50)"
    return 2 * scenario.total_users + 50, why


def local_stack_settings(
    scenario: Scenario,
    preset: str,
    out: Path,
    knobs: opt.StackKnobs,
    say: Callable[[str], None],
    runtime: str = "python",
) -> StackSettings:
    """The local stack for a scenario: the preset's stack knobs where the user gave none, and
    max_connections with room for the load. A --max-connections below what the load needs is
    refused (exit 2, naming the value): the user asked for it, so it is never changed behind
    their back. The default is raised when the load needs more, and `say` prints one line
    saying so. Slots per EE default to the preset's, then the runtime's (Python 16, Node.js 64
    per vCPU). `poolbench sweep` builds each point's stack here too."""
    needed, why = connections_needed(scenario)
    if knobs.max_connections is not None:
        if knobs.max_connections < needed:
            raise InputError(
                f"--max-connections {knobs.max_connections:,} is below the {needed:,} that"
                f" {why} need: give --max-connections {needed:,} or more, or fewer --users"
            )
        max_connections = knobs.max_connections
        asked_by = f"--max-connections {max_connections:,}"
        raised = False
    else:
        raised = needed > opt.DEFAULT_MAX_CONNECTIONS
        max_connections = max(needed, opt.DEFAULT_MAX_CONNECTIONS)
        asked_by = why if raised else f"--max-connections {max_connections:,}"
    check_local_scale(max_connections, asked_by, available_memory_kib())
    settings = opt.build_stack_settings(
        knobs,
        run_dir=out,  # the run places it in its folder
        arms=",".join(scenario.arms),
        preset=get_preset(preset),
        max_connections=max_connections,
        runtime=runtime,
    )
    if raised:
        say(
            f"max_connections {max_connections:,}, not the default"
            f" {opt.DEFAULT_MAX_CONNECTIONS:,}: {why} need it"
        )
    return settings


def run(
    ctx: typer.Context,
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
    runtime: opt.Runtime = "python",
    schedule: Annotated[
        str, typer.Option(help="parallel: arms at once; sequential: one arm after another.")
    ] = "parallel",
    processes: Annotated[int, typer.Option(help="Locust processes (load from several cores).")] = 1,
    spawn_rate: Annotated[float | None, typer.Option(help="Users started per second.")] = None,
    out: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("reports"),
    fault: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KIND@SECONDS",
            help="Break something this many seconds into the load, KIND@SECONDS (repeatable):"
            " db-restart (local: PostgreSQL fast restart; aws: reboot of the writer instance),"
            " pooler-kill, runtime-kill (local only). Example: db-restart@20.",
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
            help="aws: wait until CloudWatch has published the run's last period (stops as soon "
            "as it has; at most 15 min after the load with a managed arm, 8 without).",
        ),
    ] = True,
    allow_throttles: Annotated[
        bool,
        typer.Option(
            "--allow-throttles",
            help="aws: run even when the managed arm's minimum capacity cannot hold the users.",
        ),
    ] = False,
    probe_interval: Annotated[
        float, typer.Option(help="aws: seconds between two DB-connection probe samples.")
    ] = 5.0,
    max_failure_rate: Annotated[
        float,
        typer.Option(
            help="A run whose failed requests exceed this share on any arm ends with exit 1 "
            "(with --fault: only an arm without a success)."
        ),
    ] = DEFAULT_MAX_FAILURE_RATE,
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
    slow_phase: Annotated[
        str | None,
        typer.Option(hidden=True, help="Tests only: hold PHASE (collect, report) SECONDS."),
    ] = None,
) -> int:
    """Run the experiment: start the target, drive every arm with equal load, collect, report.

    Example: poolbench run --preset seed            (the seed experiment on this machine)
    Example: poolbench run --preset smoke --arms standard,managed,proxy
    Example: poolbench run --preset seed --runtime nodejs
    Example: poolbench run --target aws --outputs-file cdk-outputs.json
    """
    if target not in TARGETS:
        raise InputError(f"--target must be local or aws, not {target!r}")
    check_runtime(runtime)
    if schedule not in SCHEDULES:
        raise InputError(f"--schedule must be parallel or sequential, not {schedule!r}")
    if not 0 <= max_failure_rate <= 1:
        raise InputError(f"--max-failure-rate must be between 0 and 1, not {max_failure_rate}")
    if probe_interval <= 0:
        raise InputError(f"--probe-interval must be above 0 s, not {probe_interval}")
    aws_target = load_target(outputs_file, stack) if target == "aws" and outputs_file else None
    if target == "aws" and aws_target is None:
        raise InputError("--target aws needs --outputs-file (the file cdk deploy wrote)")
    if aws_target is not None:
        refuse_local_knobs(ctx)
        check_deployed_runtime(aws_target, runtime)
    elif outputs_file is not None:
        raise InputError("--outputs-file is for --target aws; the local target makes its own")
    scenario = resolve_scenario(
        preset,
        target_arms=aws_target.arms
        if aws_target
        else parse_arms(arms or "standard,managed", where="--arms"),
        arms=arms if aws_target else None,
        users=users,
        requests_per_arm=requests,
        duration_s=duration,
        spawn_rate=spawn_rate,
        sleep_ms=sleep_ms,
        queries=queries,
        hold=hold,
        processes=processes,
    )
    faults = tuple(parse_fault(f) for f in (fault or get_preset(preset).faults))
    common: _RunBasics = {
        "scenario": scenario,
        "argv": sys.argv[1:] if sys.argv[1:2] == ["run"] else ["run"],
        "schedule": schedule,
        "report": report,
        "max_failure_rate": max_failure_rate,
        "faults": faults,
        "slow": parse_slow_phase(slow_phase),
        "runtime": runtime,
    }
    request: RunRequest
    if aws_target is None:
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
            max_connections=max_connections,
        )
        stack_settings = _checked_local_stack(scenario, preset, out, knobs, runtime)
        out = check_folder(out, "--out")
        ensure_open_files(descriptors_needed(stack_settings, scenario.users))
        request = LocalRun(stack=stack_settings, out_root=out, **common)
    else:
        _check_aws_faults(faults, aws_target)
        out = check_folder(out, "--out")
        ensure_open_files(descriptors_needed(None, scenario.users))
        _check_aws_before_load(aws_target, scenario, allow_throttles)
        request = AwsRun(
            aws=aws_target,
            wait_for_metrics=wait,
            probe_interval_s=probe_interval,
            out_root=out,
            **common,
        )
    return _execute_and_print(request)


class _RunBasics(TypedDict):
    """What LocalRun and AwsRun share, as the command settled it."""

    scenario: Scenario
    argv: list[str]
    schedule: str
    report: bool
    max_failure_rate: float
    faults: tuple[Fault, ...]
    slow: SlowPhase
    runtime: str


def _checked_local_stack(
    scenario: Scenario, preset: str, out: Path, knobs: opt.StackKnobs, runtime: str
) -> StackSettings:
    check_sleep_fits(
        scenario.sleep_ms,
        EESettings.invoke_timeout_s,
        "the local stack",
        "use --target aws with a longer -c timeoutSeconds",
    )
    return local_stack_settings(scenario, preset, out, knobs, console.print, runtime)


def check_deployed_runtime(target: Target, runtime: str) -> None:
    """On AWS the runtime is the deployed stack's (-c runtime=...): a run that asks for another
    would measure what it did not ask for. Stacks from before the knob have no output: python."""
    deployed = target.outputs.get(contract.OUT_RUNTIME, contract.DEFAULT_RUNTIME)
    if deployed != runtime:
        raise InputError(
            f"--runtime {runtime}: the stack in {target.path} runs {deployed}; redeploy with"
            f" `npx cdk deploy -c runtime={runtime} --outputs-file {target.path}` or pass"
            f" --runtime {deployed}"
        )


def _check_aws_faults(faults: tuple[Fault, ...], target: Target) -> None:
    if not faults:
        return
    check_aws_faults([f.kind for f in faults])
    if "DbClusterIdentifier" not in target.outputs:
        raise InputError(
            "--fault db-restart needs the output DbClusterIdentifier: the stack predates it;"
            " redeploy (npx cdk deploy --outputs-file ...)"
        )


def _execute_and_print(request: RunRequest) -> int:
    """The run, then its closing table (or why there is none); the exit code."""
    try:
        outcome = execute(request, console)
    except KeyboardInterrupt:
        console.print("interrupted: the run folder keeps what was written; nothing left running")
        return 130
    except RunFailed as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    if outcome.failure is not None and outcome.report is None:
        console.print(f"[red]run failed: {outcome.failure}[/]")
    if outcome.report is not None:
        print_summary_table(outcome.run_dir)
        console.print(f"report: {outcome.report}")
    else:
        console.print(f"run folder: {outcome.run_dir}")
    return 1 if outcome.failure is not None else 0


def parse_slow_phase(text: str | None) -> SlowPhase:
    """--slow-phase PHASE:SECONDS (hidden, for tests) -> the SlowPhase the run holds."""
    if text is None:
        return SlowPhase()
    phase, _, seconds = text.partition(":")
    try:
        held = float(seconds)
    except ValueError:
        held = -1.0
    if phase not in SLOWABLE_PHASES or held <= 0:
        raise InputError(
            f"--slow-phase must be PHASE:SECONDS with PHASE one of {', '.join(SLOWABLE_PHASES)}"
            f" and SECONDS above 0, not {text!r}"
        )
    return SlowPhase(phase, held)


def _check_aws_before_load(target: Target, scenario: Scenario, allow_throttles: bool) -> None:
    """Outputs, capacity and timeout, then the stack's Region and working credentials: all
    before the run folder exists, so a refused run leaves nothing behind."""
    from poolbench.aws import check_credentials, outputs_region, region_note

    check_aws_run(target, scenario, allow_throttles)
    region = outputs_region(target.outputs, f"outputs file {target.path}")
    note = region_note(region)
    if note:
        console.print(note, soft_wrap=True)
    identity = check_credentials(region)
    console.print(f"AWS account {identity.account} ({identity.arn}), region {region}")
