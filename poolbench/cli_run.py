"""`poolbench run`: the whole experiment in one command, on the local stack or on AWS."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from functions import contract
from functions.contract import TARGETS
from input_errors import InputError
from loadtest.presets import PRESETS, Scenario, get_preset, resolve_scenario
from loadtest.target import Target, load_target, parse_arms
from local.execution_environment import EESettings
from local.faults import parse_fault
from local.settings import (
    DEFAULT_SLOTS_PER_VCPU,
    ManagedSettings,
    PoolerSettings,
    ProxySettings,
    StackSettings,
    StandardSettings,
    check_runtime,
)
from poolbench import stack_options as opt
from poolbench.aws_faults import check_aws_faults
from poolbench.aws_target import check_aws_run, check_sleep_fits
from poolbench.input_checks import available_memory_kib, check_folder, check_local_scale
from poolbench.open_files import descriptors_needed, ensure_open_files
from poolbench.run import DEFAULT_MAX_FAILURE_RATE, RunFailed, RunRequest, execute

console = Console(stderr=True, highlight=False)  # paths and run ids are not numbers
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

    for name in opt.KNOBS:
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


def local_stack_settings(
    scenario: Scenario, preset: str, out: Path, knobs: dict[str, Any], runtime: str = "python"
) -> StackSettings:
    """The local stack for a scenario: the preset's stack knobs where the user gave none (None),
    then the runtime's default slots per EE (Python 16, Node.js 64 per vCPU), and room in
    max_connections for every user's connection on every arm. `poolbench sweep` builds each
    point's stack here too."""
    knobs = dict(knobs)
    preset_knobs = PRESET_STACK_KNOBS.get(preset, {})
    for name, default in (
        ("slots_per_ee", DEFAULT_SLOTS_PER_VCPU[runtime]),
        ("target_utilisation", _M.target_utilisation),
    ):
        if knobs[name] is None:
            knobs[name] = preset_knobs.get(name, default)
    asked = knobs["max_connections"]
    knobs["max_connections"] = max(asked, 2 * scenario.total_users + 50)
    check_local_scale(
        knobs["max_connections"],
        f"--users {scenario.users:,} x {len(scenario.arms)} arms (2 connections per user + 50)"
        if knobs["max_connections"] > asked
        else f"--max-connections {asked:,}",
        available_memory_kib(),
    )
    return opt.build_stack_settings(
        run_dir=out,
        arms=",".join(scenario.arms),
        runtime=runtime,
        **knobs,  # the run places it in its folder
    )


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
    stack_settings = None
    aws_target = None
    if target == "aws":
        if outputs_file is None:
            raise InputError("--target aws needs --outputs-file (the file cdk deploy wrote)")
        aws_target = load_target(outputs_file, stack)
        refuse_local_knobs(ctx)
        check_deployed_runtime(aws_target, runtime)
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
        check_sleep_fits(
            scenario.sleep_ms,
            EESettings.invoke_timeout_s,
            "the local stack",
            "use --target aws with a longer -c timeoutSeconds",
        )
        knobs = opt.knob_values(locals())
        stack_settings = local_stack_settings(scenario, preset, out, knobs, runtime)
    faults = tuple(parse_fault(f) for f in (fault or get_preset(preset).faults))
    if faults and aws_target is not None:
        check_aws_faults([f.kind for f in faults])
        if "DbClusterIdentifier" not in aws_target.outputs:
            raise InputError(
                "--fault db-restart needs the output DbClusterIdentifier: the stack predates it;"
                " redeploy (npx cdk deploy --outputs-file ...)"
            )
    out = check_folder(out, "--out")
    ensure_open_files(descriptors_needed(stack_settings, scenario.users))
    if aws_target is not None:
        _check_aws_before_load(aws_target, scenario, allow_throttles)
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
        probe_interval_s=probe_interval,
        max_failure_rate=max_failure_rate,
        faults=faults,
        runtime=runtime,
    )
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
