"""`poolbench sweep`: the curve, not one data point. Builds one `poolbench run` request per point
(the same builder `run` uses) and hands them to poolbench.sweep."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from functions.contract import TARGETS
from input_errors import InputError
from loadtest.presets import PRESETS, resolve_scenario
from loadtest.target import load_target, parse_arms
from local.execution_environment import EESettings
from poolbench import stack_options as opt
from poolbench.aws_target import check_aws_run, check_sleep_fits
from poolbench.cli_run import (
    AWS_EQUIVALENT,
    _check_aws_before_load,
    check_deployed_runtime,
    local_stack_settings,
)
from poolbench.open_files import descriptors_needed, ensure_open_files
from poolbench.run import AwsRun, LocalRun, RunRequest
from poolbench.sweep import (
    Point,
    SweepPlan,
    cross_product,
    parse_list,
    parse_runtimes,
    point_command,
    run_sweep,
)

console = Console(stderr=True)
AWS_PERIOD_S = 300


def _report_point(run_dir: Path, log: Console, target: str, wait: bool) -> None:
    from poolbench.run import _report  # the same collect + report step `run` ends with

    _report(run_dir, log, wait=wait, target=target)


def sweep(
    users: Annotated[
        str, typer.Option(help="Users per arm, a comma-separated list: one point per value.")
    ],
    arms: Annotated[
        str | None, typer.Option(help="Arms to drive (default: local standard,managed; aws: all).")
    ] = None,
    slots_per_ee: Annotated[
        str | None,
        typer.Option(help="local: managed requests per EE, a list (e.g. 16,64); aws: refused."),
    ] = None,
    pool_size: Annotated[
        str | None,
        typer.Option(help="local: in-EE PgBouncer default_pool_size, a list; aws: refused."),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="The function under test, a list: python,nodejs (default python; aws: the"
            " deployed stack's only, -c runtime=...)."
        ),
    ] = None,
    requests: Annotated[
        int | None, typer.Option("--requests", help="Requests per arm at every point.")
    ] = None,
    duration: Annotated[
        int | None, typer.Option(help="Seconds per point instead (aws: 300 at least).")
    ] = None,
    sleep_ms: Annotated[int | None, typer.Option(help="Handler sleep while holding (ms).")] = None,
    queries: Annotated[int | None, typer.Option(help="Queries per request.")] = None,
    preset: Annotated[
        str, typer.Option(help=f"Scenario preset for what is not given: {', '.join(PRESETS)}.")
    ] = "seed",
    target: Annotated[
        str, typer.Option(help="local (this machine) or aws (a deployed stack).")
    ] = "local",
    outputs_file: Annotated[
        Path | None, typer.Option(help="aws: the file `cdk deploy --outputs-file` wrote.")
    ] = None,
    stack: Annotated[str | None, typer.Option(help="aws: the stack in the outputs file.")] = None,
    out: Annotated[Path, typer.Option(help="Where the sweep folder goes.")] = Path("reports"),
    prices: Annotated[
        Path | None,
        typer.Option(help="Price table (TOML/JSON, shape of analysis/prices/aws.toml)."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="aws: wait after each point until CloudWatch has published its last period.",
        ),
    ] = True,
) -> int:
    """Run the cross product of users x slots per EE x pool size, point by point.

    Each point is an ordinary run folder under <OUT>/sweep-<UTC>/; then
    sweep.json, sweep.csv and sweep.html. Ctrl-C keeps finished points and
    marks the sweep interrupted; `poolbench report <SWEEP_DIR>` rebuilds it.

    AWS: each point should last at least one 5-minute period (--duration 300
    or more): the Managed Instances metrics are published every 5 minutes.

    AWS: slots per EE and pool size need a redeploy (-c
    perEnvironmentMaxConcurrency=N, -c defaultPoolSize=N).

    Example: poolbench sweep --users 5,20 --arms standard,managed --requests 40 --sleep-ms 200
    Example: poolbench sweep --users 10,25,50 --slots-per-ee 16,64
    Example: poolbench sweep --users 25,100 --runtime python,nodejs
    """
    if target not in TARGETS:
        raise InputError(f"--target must be local or aws, not {target!r}")
    user_list = parse_list(users, "--users")
    if not user_list:
        raise InputError("--users needs a comma-separated list of whole numbers, e.g. 10,25,50")
    if target == "aws":
        for flag, value, knob in (
            ("--slots-per-ee", slots_per_ee, "slots_per_ee"),
            ("--pool-size", pool_size, "pool_size"),
        ):
            if value is not None:
                raise InputError(
                    f"{flag} needs a redeploy on AWS: {AWS_EQUIVALENT[knob]}, then sweep --users"
                )
    slots = parse_list(slots_per_ee, "--slots-per-ee")
    pools = parse_list(pool_size, "--pool-size")
    runtimes = parse_runtimes(runtime)
    if prices is not None:
        from analysis.cost import DEFAULT_REGION, load_prices

        region = DEFAULT_REGION
        if target == "aws" and outputs_file is not None:
            region = load_target(outputs_file, stack).outputs.get("Region", DEFAULT_REGION)
        load_prices(region, prices)  # a bad table stops the sweep before it starts
    points = cross_product(user_list, slots, pools, runtimes)
    base = [f"--target={target}", f"--preset={preset}"]
    given: tuple[tuple[str, object], ...] = (
        ("--arms", arms),
        ("--requests", requests),
        ("--duration", duration),
        ("--sleep-ms", sleep_ms),
        ("--queries", queries),
        ("--outputs-file", outputs_file),
        ("--stack", stack),
    )
    for flag, given_value in given:
        if given_value is not None:
            base.append(f"{flag}={given_value}")
    aws_target = None
    if target == "aws":
        if outputs_file is None:
            raise InputError("--target aws needs --outputs-file (the file cdk deploy wrote)")
        aws_target = load_target(outputs_file, stack)
        if len(runtimes) > 1:
            raise InputError(
                "--runtime: a deployed stack runs one runtime; sweep each after its own"
                " `cdk deploy -c runtime=...`"
            )
        check_deployed_runtime(aws_target, runtimes[0] if runtimes else "python")
        target_arms = aws_target.arms
    else:
        if outputs_file is not None:
            raise InputError("--outputs-file is for --target aws; the local target makes its own")
        target_arms = parse_arms(arms or "standard,managed", where="--arms")
    planned: list[tuple[Point, RunRequest]] = []
    for point in points:
        scenario = resolve_scenario(
            preset,
            target_arms=target_arms,
            arms=arms if target == "aws" else None,
            users=point.users,
            requests_per_arm=requests,
            duration_s=duration,
            sleep_ms=sleep_ms,
            queries=queries,
        )
        stack_settings = None
        if aws_target is None:
            check_sleep_fits(
                scenario.sleep_ms,
                EESettings.invoke_timeout_s,
                "the local stack",
                "use --target aws with a longer -c timeoutSeconds",
            )
            knobs = opt.StackKnobs(
                slots_per_ee=point.slots_per_ee,
                pool_size=point.pool_size or opt.POOLER_DEFAULTS.default_pool_size,
            )
            stack_settings = local_stack_settings(
                scenario, preset, out, knobs, console.print, point.runtime or "python"
            )
            ensure_open_files(descriptors_needed(stack_settings, scenario.users))
        else:
            check_aws_run(aws_target, scenario, allow_throttles=False)
        request: RunRequest
        if stack_settings is not None:
            request = LocalRun(
                scenario=scenario,
                out_root=out,  # replaced by the sweep folder
                argv=point_command(base, point),
                stack=stack_settings,
                report=False,
                runtime=point.runtime or "python",
            )
        else:
            assert aws_target is not None
            request = AwsRun(
                scenario=scenario,
                out_root=out,
                argv=point_command(base, point),
                aws=aws_target,
                report=False,
                runtime=point.runtime or "python",
            )
        planned.append((point, request))
    if aws_target is not None:
        if (planned[0][1].scenario.duration_s or 0) < AWS_PERIOD_S:
            console.print(
                "warning: points shorter than 300 s (one 5-minute period) give the Managed "
                "Instances metrics little to say; use --duration 300 or more",
                soft_wrap=True,
            )
        _check_aws_before_load(aws_target, planned[0][1].scenario, allow_throttles=False)
    plan = SweepPlan(
        target=target,
        command=shlex.join(["poolbench", *(sys.argv[1:] if sys.argv[1:2] == ["sweep"] else [])]),
        knobs={
            "users": list(user_list),
            "slots_per_ee": list(slots),
            "pool_size": list(pools),
            "runtime": list(runtimes),
        },
        points=planned,
        prices=prices,
    )
    sweep_dir, code = run_sweep(
        plan,
        out,
        console,
        lambda run_dir, log: _report_point(run_dir, log, target, wait),
    )
    console.print(f"sweep: {sweep_dir / 'sweep.html'}")
    if code == 130:
        console.print("interrupted: finished points kept; the sweep is marked interrupted")
    return code
