"""`poolbench sweep`'s engine: the cross product of users x slots per EE x pool size, one
ordinary run folder per point, run one after another under reports/sweep-<UTC>/.

Every point is built and checked before the first starts, so bad input leaves nothing behind.
sweep.json is rewritten after every point: a Ctrl-C keeps the finished points, marks the sweep
interrupted and still writes sweep.csv and sweep.html from what finished.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from analysis.runfolder import write_json_atomic
from input_errors import InputError
from local.settings import check_runtime
from poolbench.manifest import utc_now
from poolbench.run import RunFailed, RunRequest, execute, new_run_dir


@dataclass(frozen=True)
class Point:
    """One run of the sweep; None: the knob is not swept (the run's default applies)."""

    users: int
    slots_per_ee: int | None = None
    pool_size: int | None = None
    runtime: str | None = None

    def describe(self) -> str:
        parts = [f"users={self.users}"]
        if self.runtime is not None:
            parts.insert(0, f"runtime={self.runtime}")
        if self.slots_per_ee is not None:
            parts.append(f"slots_per_ee={self.slots_per_ee}")
        if self.pool_size is not None:
            parts.append(f"pool_size={self.pool_size}")
        return " ".join(parts)


def parse_list(text: str | None, flag: str, *, minimum: int = 1) -> tuple[int, ...]:
    """'10,25,50' -> (10, 25, 50); a one-line InputError for empty, non-numbers, too small or
    repeated values."""
    if text is None:
        return ()
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise InputError(f"{flag} needs a comma-separated list of whole numbers, e.g. 10,25,50")
    values = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise InputError(
                f"{flag}: {part!r} is not a whole number (e.g. {flag} 10,25,50)"
            ) from None
        if value < minimum:
            raise InputError(f"{flag}: {value} is below {minimum}; give values >= {minimum}")
        values.append(value)
    if len(set(values)) != len(values):
        raise InputError(f"{flag}: a value is listed twice ({text})")
    return tuple(values)


def cross_product(
    users: Sequence[int],
    slots: Sequence[int],
    pools: Sequence[int],
    runtimes: Sequence[str] = (),
) -> list[Point]:
    """Every combination, users innermost so a knob's curve is run in one stretch, runtime
    outermost so each runtime's curves come in one stretch."""
    maybe_slots: list[int | None] = [*slots] or [None]
    maybe_pools: list[int | None] = [*pools] or [None]
    maybe_runtimes: list[str | None] = [*runtimes] or [None]
    return [
        Point(u, s, p, r)
        for r, s, p, u in itertools.product(maybe_runtimes, maybe_slots, maybe_pools, users)
    ]


def parse_runtimes(text: str | None) -> tuple[str, ...]:
    """'python,nodejs' -> ('python', 'nodejs'); one line naming a bad or repeated value."""
    if text is None:
        return ()
    parts = [p.strip() for p in text.split(",")]
    if len(set(parts)) != len(parts):
        raise InputError(f"--runtime: a value is listed twice ({text})")
    return tuple(check_runtime(p) for p in parts)


def new_sweep_dir(out_root: Path) -> Path:
    """reports/sweep-<UTC time>/, never an existing folder."""
    return new_run_dir(out_root, "sweep-")


@dataclass(frozen=True)
class SweepPlan:
    """Checked points with their run requests (out_root is set per sweep folder)."""

    target: str
    command: str
    knobs: dict[str, Any]
    points: list[tuple[Point, RunRequest]]
    prices: Path | None = None


def run_sweep(
    plan: SweepPlan,
    out_root: Path,
    console: Console,
    report_point: Callable[[Path, Console], None],
) -> tuple[Path, int]:
    """Runs every point; returns the sweep folder and the exit code (0 all completed, 1 a point
    failed, 130 interrupted). `report_point(run_dir, log)` collects and reports one point."""
    from analysis.sweep_report import SWEEP_JSON, build_sweep_report

    sweep_dir = new_sweep_dir(out_root)
    state: dict[str, Any] = {
        "sweep_id": sweep_dir.name,
        "status": "running",
        "target": plan.target,
        "command": plan.command,
        "knobs": plan.knobs,
        "prices": str(plan.prices) if plan.prices else None,
        "started_at": utc_now(),
        "ended_at": None,
        "points": [
            {**point.__dict__, "status": "pending", "run_dir": None, "failure": None}
            for point, _ in plan.points
        ],
    }

    def save() -> None:
        write_json_atomic(sweep_dir / SWEEP_JSON, state)

    save()
    console.print(f"sweep folder: {sweep_dir} ({len(plan.points)} points; log: sweep.log)")
    code = 0
    progress = Progress(
        TextColumn("[bold]sweep[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} points"),
        TimeElapsedColumn(),
        console=console,
    )
    with (sweep_dir / "sweep.log").open("a", encoding="utf-8") as log_fh:
        log = Console(file=log_fh, width=120)
        try:
            with progress:
                task = progress.add_task("", total=len(plan.points))
                for index, (point, request) in enumerate(plan.points):
                    entry = state["points"][index]
                    progress.update(task, description=point.describe())
                    entry["status"] = "running"
                    save()
                    log.rule(point.describe())
                    try:
                        entry.update(
                            _run_point(
                                replace(request, out_root=sweep_dir),
                                sweep_dir,
                                plan.prices,
                                log,
                                report_point,
                            )
                        )
                    except KeyboardInterrupt:
                        entry["status"] = "interrupted"
                        entry["run_dir"] = _newest_run(sweep_dir, state)
                        raise
                    if entry["status"] != "completed":
                        code = 1
                    save()
                    progress.advance(task)
            state["status"] = "completed"
        except KeyboardInterrupt:
            state["status"] = "interrupted"
            code = 130
        finally:
            state["ended_at"] = utc_now()
            save()
            build_sweep_report(sweep_dir)
    return sweep_dir, code


def _newest_run(sweep_dir: Path, state: dict[str, Any]) -> str | None:
    """The run folder an interrupted point had made, if any (a folder no point claims yet)."""
    claimed = {p["run_dir"] for p in state["points"] if p["run_dir"]}
    folders = sorted(
        p.name for p in sweep_dir.iterdir() if p.is_dir() and (p / "manifest.json").is_file()
    )
    fresh = [f for f in folders if f not in claimed]
    return fresh[-1] if fresh else None


def _run_point(
    request: RunRequest,
    sweep_dir: Path,
    prices: Path | None,
    log: Console,
    report_point: Callable[[Path, Console], None],
) -> dict[str, Any]:
    """One point through the same path as `poolbench run`; its report is built once the
    sweep's price file is in its folder, so its summary.json is priced with it."""
    try:
        outcome = execute(request, log)
    except RunFailed as exc:
        log.print(str(exc))
        return {
            "status": "failed",
            "failure": str(exc),
            "run_dir": _run_dir_of(str(exc), sweep_dir),
        }
    run_dir = outcome.run_dir
    if prices is not None:
        shutil.copyfile(prices, run_dir / f"prices{prices.suffix}")
    try:
        report_point(run_dir, log)
    except RunFailed as exc:
        return {"status": "failed", "failure": str(exc), "run_dir": run_dir.name}
    return {"status": outcome.status, "failure": outcome.failure, "run_dir": run_dir.name}


def _run_dir_of(message: str, sweep_dir: Path) -> str | None:
    """RunFailed names the run folder it left: '(run folder <path>)'."""
    marker = "(run folder "
    if marker not in message:
        return None
    path = Path(message.rsplit(marker, 1)[1].rstrip(")"))
    return path.name if path.parent == sweep_dir else None


def point_command(base: list[str], point: Point) -> list[str]:
    """The `poolbench run` argv that re-runs one point by hand (recorded in its manifest)."""
    argv = ["run", *base, "--users", str(point.users)]
    if point.slots_per_ee is not None:
        argv += ["--slots-per-ee", str(point.slots_per_ee)]
    if point.pool_size is not None:
        argv += ["--pool-size", str(point.pool_size)]
    if point.runtime is not None:
        argv += ["--runtime", point.runtime]
    return argv
