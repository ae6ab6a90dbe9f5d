"""`poolbench run`: target -> load -> collect -> report, into one new run folder.

Everything the command needs is checked before anything starts (bad input never leaves a half
run behind). Once started, the run folder only grows: an interrupt or a failure marks the
manifest and keeps what was written; the local stack and Locust are always stopped.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import ClassVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from loadtest.presets import Scenario, locust_command
from loadtest.records import REQUESTS_DIR
from loadtest.target import Target
from local.faults import Fault, inject
from local.processes import OrphanWatcher, kill_tagged, spawn, stop_group
from local.settings import StackSettings
from local.stack import LocalStack, running_stack
from poolbench.aws import session as aws_session
from poolbench.aws_faults import inject_aws
from poolbench.manifest import Manifest, utc_now
from poolbench.open_files import watching_open_files
from poolbench.progress import Ticker

LOCUST_STOP_GRACE_S = 3.0
"""On Ctrl-C Locust gets this long to write its CSVs (it rewrites them every second anyway);
then the stack's stop (local.stack.STOP_BUDGET_S) must still fit in the 10 s teardown bound."""
DEFAULT_MAX_FAILURE_RATE = 0.01
"""A run fails (exit 1) when any arm fails more than 1% of its requests, or has no success:
the source experiment's 46 failures in 1000 (4.6%) on Managed Instances were most likely
throttles, and a comparison with that many would measure under-provisioning, not pooling."""


class RunFailed(RuntimeError):
    """The run started but did not complete; the manifest says why."""


SLOWABLE_PHASES = ("collect", "report")


@dataclass(frozen=True)
class SlowPhase:
    """For tests only: hold one phase this many seconds once it has begun. A small local run
    collects and reports in well under a second, too short to interrupt on purpose; held, the
    phase can be, with every signal handler and clean-up it really has. Built from the hidden
    `--slow-phase PHASE:SECONDS` at the CLI edge; by default nothing is held."""

    phase: str | None = None
    seconds: float = 0.0

    def hold(self, phase: str) -> None:
        if phase == self.phase:
            time.sleep(self.seconds)


@dataclass(frozen=True, kw_only=True)
class _Run:
    """What every checked run has: the scenario and what to do around its load."""

    scenario: Scenario
    out_root: Path
    argv: list[str]
    schedule: str = "parallel"
    report: bool = True
    max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE
    faults: tuple[Fault, ...] = ()
    slow: SlowPhase = SlowPhase()
    runtime: str = "python"  # the function under test on every arm (local: the stack's)


@dataclass(frozen=True, kw_only=True)
class LocalRun(_Run):
    """A run against a local stack this command starts, and stops."""

    stack: StackSettings
    target: ClassVar[str] = "local"


@dataclass(frozen=True, kw_only=True)
class AwsRun(_Run):
    """A run against a deployed stack; the probe samples its database during the load, and
    collect waits (unless told not to) for CloudWatch's last period."""

    aws: Target
    wait_for_metrics: bool = True
    probe_interval_s: float = 5.0
    target: ClassVar[str] = "aws"


RunRequest = LocalRun | AwsRun
"""A checked request: a local stack or a deployed one, never half of each."""


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    status: str
    report: Path | None
    failure: str | None = None
    """Why the load counts as failed (no success, too many failures); None when it did not."""


def no_success_anywhere(run_dir: Path, arms: tuple[str, ...]) -> bool:
    """True when Locust counted no successful request on any arm."""
    stats_path = run_dir / "locust_stats.csv"
    if not stats_path.is_file():
        return True
    from analysis.locust_results import read_stats

    stats = read_stats(stats_path)
    return all((s := stats.get(arm)) is None or s.requests - s.failures <= 0 for arm in arms)


def load_failure(run_dir: Path, arms: tuple[str, ...], max_rate: float) -> str | None:
    """Why the load failed, from Locust's own totals: an arm with no successful request, or
    one whose failure rate exceeds `max_rate`; the first failure's message names the cause."""
    stats_path = run_dir / "locust_stats.csv"
    if not stats_path.is_file():
        return "Locust wrote no locust_stats.csv"
    from analysis.locust_results import read_failures, read_stats

    stats = read_stats(stats_path)
    failures_path = run_dir / "locust_failures.csv"
    kinds = read_failures(failures_path) if failures_path.is_file() else []
    reasons = []
    for arm in arms:
        arm_stats = stats.get(arm)
        requests = arm_stats.requests if arm_stats else 0
        failed = arm_stats.failures if arm_stats else 0
        first = next((f.error for f in kinds if f.arm == arm), None)
        cause = f" (first error: {' '.join(first.split())[:200]})" if first else ""
        if requests - failed <= 0:
            reasons.append(f"arm {arm}: no successful request of {requests}{cause}")
        elif failed / requests > max_rate:
            reasons.append(
                f"arm {arm}: {failed} of {requests} requests failed "
                f"({failed / requests:.1%} > {max_rate:.1%}){cause}"
            )
    return "; ".join(reasons) or None


def stamped_name(prefix: str = "") -> str:
    """A run folder's name: <prefix><UTC time to the second>."""
    return prefix + datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")


def new_run_dir(out_root: Path, prefix: str = "") -> Path:
    """reports/<prefix><UTC time>/, never an existing folder: old results are never mixed in."""
    out_root.mkdir(parents=True, exist_ok=True)
    stamp = stamped_name(prefix)
    for n in range(1, 1000):
        candidate = out_root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"cannot create a run folder in {out_root}")


def requests_so_far(stats_csv: Path, arms: tuple[str, ...]) -> int:
    """Requests Locust has counted, from the stats CSV it rewrites every few seconds."""
    try:
        with stats_csv.open(newline="") as fh:
            return sum(
                int(row["Request Count"]) for row in csv.DictReader(fh) if row["Name"] in arms
            )
    except (OSError, KeyError, ValueError):
        return 0


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run the way Ctrl-C does (a CI job or `kill` ends it cleanly too)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    # A background job of a non-interactive shell inherits SIGINT ignored; Ctrl-C or `kill
    # -INT` must still stop the run cleanly, as it does `local up`.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _ignored(signum: int, frame: FrameType | None) -> None:
    """Caught and dropped. Not SIG_IGN: an ignored signal stays ignored in every child
    started from then on (a scale-out's EEs go on starting while Locust stops), and a runtime
    that ignores SIGTERM holds its EE's stop for the whole grace; a handler is reset at exec."""


def ignore_further_interrupts() -> None:
    """Teardown after an interrupt must finish: a second Ctrl-C would leave servers behind."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _ignored)
        signal.signal(signal.SIGTERM, _ignored)


def restore_interrupts() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_locust(
    scenario: Scenario,
    run_dir: Path,
    outputs_file: Path,
    console: Console,
    tag: str,
    stack: str | None = None,
) -> int:
    """Locust headless as a child process (gevent stays out of our asyncio process), with a
    progress bar; on interrupt Locust is asked to stop first (SIGINT: it writes its CSVs).
    Its processes carry `tag` plus a random suffix: two runs started in the same second
    (same folder name) must never end each other's Locust."""
    tag = f"{tag}-{uuid.uuid4().hex[:12]}"
    argv = locust_command(scenario, outputs_file=outputs_file, run_dir=run_dir, stack=stack)
    (run_dir / "locust_command.txt").write_text(" ".join(argv) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    watcher = OrphanWatcher.start(tag)  # Locust ends with us, even if we are SIGKILLed
    proc = spawn(argv, tag=tag, env=env, log_file=run_dir / "locust.log")
    budget = scenario.requests_per_arm
    total = budget * len(scenario.arms) if budget else scenario.duration_s or 1
    unit = "requests" if budget else "s"
    progress = Progress(
        TextColumn("[bold]load[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} " + unit),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    started = time.monotonic()
    done: float = 0
    plain = Ticker(
        console, f"load {','.join(scenario.arms)}", lambda: f"{min(done, total):.0f}/{total} {unit}"
    )
    try:
        with progress, plain:
            task = progress.add_task(",".join(scenario.arms), total=total)
            while proc.poll() is None:
                done = (
                    requests_so_far(run_dir / "locust_stats.csv", scenario.arms)
                    if budget
                    else time.monotonic() - started
                )
                progress.update(task, completed=min(done, total))
                time.sleep(0.5)
            final = requests_so_far(run_dir / "locust_stats.csv", scenario.arms)
            progress.update(task, completed=final if budget else total)
    except KeyboardInterrupt:
        ignore_further_interrupts()
        stop_group(proc, signal.SIGINT, LOCUST_STOP_GRACE_S)
        raise
    finally:
        kill_tagged(tag, grace_s=1.0)
        watcher.release()
    return int(proc.returncode)


def _locust_failure(run_dir: Path, code: int) -> str:
    log = run_dir / "locust.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    return f"Locust exited with code {code}: {tail[0] if tail else 'see locust.log'}"


def execute(request: RunRequest, console: Console) -> RunOutcome:
    """Runs the whole pipeline; raises KeyboardInterrupt or RunFailed after recording them."""
    run_dir = new_run_dir(request.out_root)
    manifest = Manifest.start(
        run_dir,
        target=request.target,
        scenario={**request.scenario.to_manifest(), "schedule": request.schedule},
        argv=request.argv,
        runtime=request.runtime,
    )
    console.print(f"run folder: {run_dir}")
    # SIGINT and SIGTERM stop every phase the same way, collect and report included (an AWS
    # collect can wait 15 min for CloudWatch: a run started with SIGINT ignored must still
    # stop on it).
    with sigterm_as_interrupt():
        try:
            with watching_open_files() as open_files:
                if isinstance(request, LocalRun):
                    _run_local(request, run_dir, manifest, console)
                else:
                    _run_aws(request, run_dir, manifest, console)
            if (why := open_files.failure()) is not None:
                raise RuntimeError(why)
        except KeyboardInterrupt:
            manifest.update(interrupted_in=manifest.data["phase"])
            manifest.finish("interrupted", "interrupted by the user (SIGINT/SIGTERM)")
            restore_interrupts()
            raise
        except Exception as exc:
            manifest.finish("failed", f"{type(exc).__name__}: {exc}")
            raise RunFailed(f"run failed: {exc} (run folder {run_dir})") from exc
        # Injected faults make failures the measurement: then only an arm without a single
        # success fails the run.
        max_rate = 1.0 if request.faults else request.max_failure_rate
        failure = load_failure(run_dir, request.scenario.arms, max_rate)
        if failure is None:
            manifest.finish("completed")
        else:
            manifest.update(failure_threshold=max_rate)
            manifest.finish("failed", failure)
        # No request succeeded anywhere (API unreachable, all refused): CloudWatch will never
        # publish the periods the wait looks for, so collect what there is without waiting.
        wait = isinstance(request, AwsRun) and request.wait_for_metrics
        wait = wait and not no_success_anywhere(run_dir, request.scenario.arms)
        report = None
        if request.report:
            try:
                report = _report(run_dir, console, wait, request.target, manifest, request.slow)
            except KeyboardInterrupt:
                # The load's data is complete (status stays as the load ended); the report is
                # what is missing, and the manifest says at which step.
                manifest.update(interrupted_in=manifest.data["phase"])
                restore_interrupts()
                raise
        manifest.update(phase="done")
    return RunOutcome(run_dir, "failed" if failure else "completed", report, failure)


def _load(request: RunRequest, run_dir: Path, manifest: Manifest, console: Console) -> None:
    """parallel: every arm in one Locust run; sequential: one arm at a time, each alone on the
    machine, their CSVs merged into the contract's files afterwards."""
    manifest.update(load_started_at=utc_now(), phase="load")
    scenario = request.scenario
    stack = request.aws.stack if isinstance(request, AwsRun) else None
    if request.schedule == "sequential" and len(scenario.arms) > 1:
        parts = []
        for arm in scenario.arms:
            part = run_dir / f"load-{arm}"
            part.mkdir()
            code = run_locust(
                replace(scenario, arms=(arm,)),
                part,
                run_dir / "outputs.json",
                console,
                run_dir.name,
                stack,
            )
            for ees in part.glob("locust_ees*.jsonl"):
                ees.rename(run_dir / f"{ees.stem}-{arm}.jsonl")
            if code != 0:
                raise RuntimeError(_locust_failure(part, code))
            parts.append(part)
        merge_locust_csvs(parts, run_dir)
    else:
        code = run_locust(scenario, run_dir, run_dir / "outputs.json", console, run_dir.name, stack)
        if code != 0:
            raise RuntimeError(_locust_failure(run_dir, code))
    manifest.update(load_ended_at=utc_now())


def merge_locust_csvs(parts: list[Path], run_dir: Path) -> None:
    """One file per kind from per-arm runs; each run's Aggregated rows are dropped, since an
    aggregate of different arms' runs is not a thing Locust measured."""
    for kind in ("stats", "stats_history", "failures", "exceptions"):
        header: list[str] | None = None
        rows: list[dict[str, str]] = []
        for part in parts:
            path = part / f"locust_{kind}.csv"
            if not path.exists():
                continue
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                header = header or list(reader.fieldnames or [])
                rows += [r for r in reader if r.get("Name") != "Aggregated"]
        if header is None:
            continue
        with (run_dir / f"locust_{kind}.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
    # The per-request records stay one file per Locust process, all in <run>/requests/.
    (run_dir / REQUESTS_DIR).mkdir(exist_ok=True)
    for part in parts:
        for path in sorted((part / REQUESTS_DIR).glob("*.csv")):
            path.rename(run_dir / REQUESTS_DIR / f"{part.name}-{path.name}")


def _run_local(request: LocalRun, run_dir: Path, manifest: Manifest, console: Console) -> None:
    stack_settings = replace(
        request.stack, run_dir=run_dir / "stack", samples_file=run_dir / "samples.jsonl"
    )
    manifest.update(phase="stack start")
    console.print(f"starting the local stack: arms {', '.join(stack_settings.arms)} ...")
    started = time.monotonic()
    try:
        with (
            Ticker(console, "starting the local stack") as starting,
            running_stack(stack_settings) as runner,
        ):
            starting.stop()
            stack = runner.stack
            stack.write_outputs(run_dir / "outputs.json")
            described = stack.describe()
            manifest.update(
                stack=described["settings"],
                versions={
                    **manifest.data["versions"],
                    "postgresql": described["postgresql"],
                    "pgbouncer": described["pgbouncer"],
                    **described["runtime_versions"],
                },
                stack_start_s=round(time.monotonic() - started, 2),
            )
            console.print(f"stack up in {time.monotonic() - started:.1f} s at {stack.api_url}")

            def inject_local(kind: str) -> dict[str, str]:
                return runner.call(inject(runner.stack, kind), timeout=30)

            with injecting(request.faults, inject_local, console) as injected:
                try:
                    _load(request, run_dir, manifest, console)
                finally:
                    if request.faults:
                        manifest.update(faults=injected)
            # One more sample, so the last second of load is in samples.jsonl; and the mean
            # query time the poolers measured, for the Little's-law floor.
            if stack.recorder is not None:
                runner.call(stack.recorder.next_sample(), timeout=10)
                query_ms = runner.call(stack.recorder.query_time_ms(), timeout=60)
                manifest.update(scenario={**manifest.data["scenario"], "query_ms": query_ms})
            manifest.update(inits=runner.call(_init_summaries(stack), timeout=10))
    finally:
        # The database files are scratch; its log and the EEs' logs stay with the run.
        shutil.rmtree(run_dir / "stack" / "postgres" / "data", ignore_errors=True)


@contextmanager
def injecting(
    faults: tuple[Fault, ...], inject_one: Callable[[str], dict[str, str]], console: Console
) -> Iterator[list[dict[str, object]]]:
    """Injects each fault its seconds after the load starts, from a thread of its own
    (`inject_one(kind)` breaks it and says what it did); the list it yields gets one record
    per fault injected (kind, at_s, at, what was done)."""
    done: list[dict[str, object]] = []
    if not faults:
        yield done
        return
    stop = threading.Event()

    def inject_all() -> None:
        start = time.monotonic()
        for fault in sorted(faults, key=lambda f: f.at_s):
            if stop.wait(max(0.0, start + fault.at_s - time.monotonic())):
                return
            at = utc_now()
            try:
                what = inject_one(fault.kind)
            except Exception as exc:  # recorded, and the run goes on: the fault is the test
                what = {"error": f"{type(exc).__name__}: {exc}"}
            done.append({"kind": fault.kind, "at_s": fault.at_s, "at": at, "done": what})
            console.print(
                f"fault {fault} injected: {'; '.join(f'{k}: {v}' for k, v in what.items())}"
            )

    thread = threading.Thread(target=inject_all, name="faults", daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(35)


async def _init_summaries(stack: LocalStack) -> dict[str, dict[str, float | int | None]]:
    """Read on the stack's loop, where the models live."""
    return {arm: model.init_summary() for arm, model in stack.models.items()}


def _run_aws(request: AwsRun, run_dir: Path, manifest: Manifest, console: Console) -> None:
    """The chosen stack alone goes into the run folder's outputs.json (Locust, collect and
    report then read one stack, whichever --stack picked); the probe samples during the load
    and its counts and first error go to the manifest."""
    target = request.aws
    (run_dir / "outputs.json").write_text(
        json.dumps({target.stack: dict(target.outputs)}, indent=2) + "\n"
    )
    manifest.update(stack={"stack": target.stack, "outputs": dict(target.outputs)})
    from analysis.probe_sampler import probe_sampling

    rds = aws_session(target.outputs["Region"]).client("rds") if request.faults else None

    def inject_remote(kind: str) -> dict[str, str]:
        return inject_aws(kind, target.outputs, rds)

    with (
        probe_sampling(
            target.outputs, run_dir / "samples.jsonl", interval_s=request.probe_interval_s
        ) as sampler,
        injecting(request.faults, inject_remote, console) as injected,
    ):
        try:
            _load(request, run_dir, manifest, console)
        finally:
            if sampler is not None:
                manifest.update(probe=sampler.summary())
            if request.faults:
                manifest.update(faults=injected)


def _report(
    run_dir: Path,
    console: Console,
    wait: bool,
    target: str,
    manifest: Manifest | None = None,
    slow: SlowPhase = SlowPhase(),
) -> Path | None:
    """Collect (CloudWatch waits for its last period, with a progress bar), then report. A
    failure here leaves a complete run folder: the message says how to retry just this step."""
    from analysis.collect import collect
    from analysis.report import build_report
    from poolbench.aws import aws_error_line

    flag = " --target aws" if target == "aws" else ""
    retry = f"`poolbench collect {run_dir}{flag}` then `poolbench report {run_dir}`"
    try:
        if manifest is not None:
            manifest.update(phase="collect")
        console.print("collecting metrics ...")
        slow.hold("collect")
        collect(run_dir, console=console, wait=wait)
        if manifest is not None:
            manifest.update(phase="report")
        console.print("building the report ...")
        slow.hold("report")
        return build_report(run_dir)
    except KeyboardInterrupt:
        console.print(f"interrupted before the report: collect later with {retry}", soft_wrap=True)
        raise
    except Exception as exc:
        why = aws_error_line(exc) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        raise RunFailed(
            f"the load finished but its report did not: {why}; retry with {retry}"
        ) from exc
