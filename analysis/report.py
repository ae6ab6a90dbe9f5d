"""`poolbench report`: run folder -> summary.json, charts/*.png and one self-contained
report.html (images inline as base64, CSS inline, no script, nothing fetched).

Idempotent: every output is derived from the run's raw files and rewritten atomically, so
running it again gives the same report and an interrupted run leaves the previous one intact.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from analysis import charts as chart_module
from analysis import dataset
from analysis.collect import load_dataset
from analysis.locust_results import LocustFailure, read_failures, read_history
from analysis.requests import load_records
from analysis.runfolder import (
    LOCUST_FAILURES,
    LOCUST_HISTORY,
    LOCUST_STATS,
    METRICS,
    REPORT,
    SUMMARY,
    RunFolder,
    write_json_atomic,
    write_text_atomic,
)
from analysis.summary import RunSummary, summarize
from analysis.sweep_report import SWEEP_JSON, crossings, max_connections_of, read_sweep
from analysis.sweep_report import rows as sweep_rows
from input_errors import InputError

TEMPLATES = Path(__file__).parent / "templates"


def people(value: Any) -> str:
    """A number as a person reads it: thousands separated, and no more digits than the
    measurement carries (3 significant, never more than 3 decimals); 'n/a' for missing."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    size = abs(value)
    if value.is_integer():
        return f"{int(value):,}"
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    if size >= 0.001:
        return f"{value:.3f}"
    return "< 0.001" if value > 0 else "> -0.001"


def _num(value: float | None, digits: int | None = None) -> str:
    """Numbers for the tables: missing shows as 'n/a', never as 0; `digits` fixes the
    decimals (columns read best aligned), else people() rounds."""
    if value is None:
        return "n/a"
    if digits is None:
        return people(float(value))
    return f"{value:,.{min(digits, 3)}f}"


def _usd(value: float | None) -> str:
    """Dollars: cents from a dollar up, three decimals below one."""
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3f}"


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return people(value)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _show(value: Any) -> str:
    """Any value for the page, its floats rounded for people (summary.json keeps them)."""
    if isinstance(value, dict | list):
        return json.dumps(_rounded(value), sort_keys=True)
    return people(value)


# The scenario table for people: what each manifest key means, with its unit, and whether it
# is per arm or over all arms (users is per arm, spawn_rate is the total Locust starts).
SCENARIO_LABELS = {
    "preset": ("preset", ""),
    "arms": ("arms", ""),
    "users": ("users per arm", ""),
    "requests_per_arm": ("requests per arm", ""),
    "duration_s": ("duration", " s"),
    "spawn_rate": ("users started per second, all arms", "/s"),
    "sleep_ms": ("handler sleep per request", " ms"),
    "queries": ("queries per request", ""),
    "hold": ("one connection held per request", ""),
    "processes": ("Locust processes", ""),
    "ramp_interval_s": ("ramp: users double at most every", " s"),
    "ramp_start": ("ramp: users per arm at the start", ""),
    "schedule": ("arm schedule", ""),
    "query_ms": ("query time (PgBouncer's own)", " ms"),
}


def scenario_rows(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs: labels with units, values as a person writes them (`yes`, not
    `True`; `standard, managed`, not a JSON list; unset knobs left out)."""
    rows = []
    for key, value in scenario.items():
        if value is None:
            continue
        label, unit = SCENARIO_LABELS.get(key, (key, ""))
        if isinstance(value, list | tuple):
            text = ", ".join(people(v) for v in value)
        else:
            text = people(value)
        rows.append((label, f"{text}{unit}"))
    return rows


def sweep_fit_sentences(folder: RunFolder, summary: RunSummary) -> list[str]:
    """When the run is a point of a `poolbench sweep`, where each per-EE-pool arm's fitted
    line meets max_connections, over the sweep's points measured so far (this one included);
    nothing when the run is not in a sweep or no line can be fitted yet."""
    sweep_dir = folder.path.parent
    if not (sweep_dir / SWEEP_JSON).is_file():
        return []
    try:
        sweep = read_sweep(sweep_dir)
        table = sweep_rows(sweep_dir, sweep, current=(folder.path.name, summary.to_json()))
    except (InputError, OSError, ValueError, KeyError):  # a damaged sweep says nothing
        return []
    found = crossings(table)
    if not found:
        return []
    points = len({r["_run_dir"] for r in table})
    return [
        f"Sweep {sweep.get('sweep_id', sweep_dir.name)}, over its {points} points measured "
        f"so far: {c.sentence()}"
        for c in found
    ]


def what_this_run_says(folder: RunFolder, summary: RunSummary) -> list[str]:
    """Sentences made only of measured numbers (and the cost model's figures): DB connections
    per arm at this load, where a sweep's fit meets max_connections, and cost per arm."""
    said: list[str] = []
    users = (folder.manifest.get("scenario") or {}).get("users")
    load = f"{people(users)} users per arm" if users is not None else "this load"
    for arm in summary.arms:
        label = arm.label[:1].upper() + arm.label[1:]
        if arm.peak_db_connections is None:
            said.append(f"{label}: no DB connection samples at {load}.")
            continue
        ratio = arm.db_connections_per_concurrent_request
        per = f" ({_num(ratio, 2)} per concurrent request)" if ratio is not None else ""
        said.append(
            f"{label}: peak {people(arm.peak_db_connections)} DB connections at {load}, "
            f"with peak {_num(arm.peak_concurrency)} concurrent requests{per}."
        )
    limit = max_connections_of(folder.manifest)
    if limit is not None:
        total = summary.database_peak_connections
        said.append(
            f"The database's max_connections: {people(limit)}"
            + (f"; all sessions peaked at {people(total)}." if total is not None else ".")
        )
    said += sweep_fit_sentences(folder, summary)
    local = summary.target == "local"
    for arm in summary.arms:
        cost = arm.cost or {}
        per_million = cost.get("usd_per_million_requests")
        if per_million is None:
            continue
        label = arm.label[:1].upper() + arm.label[1:]
        said.append(
            f"{label}: {_usd(per_million)} per million requests, "
            f"{_usd(cost.get('usd_per_hour_at_this_load'))} per hour at this load"
            + (" (estimated from a local run, priced as if on AWS)." if local else ".")
        )
    return said


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["usd"] = _usd
    env.filters["show"] = _show
    env.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    return env


def render_html(
    folder: RunFolder,
    summary: RunSummary,
    charts: list[chart_module.Chart],
    failures: list[LocustFailure],
    generated_at: datetime | None = None,
) -> str:
    """The report page as a string."""
    manifest = folder.manifest
    floor_note = summary.arms[0].seconds_per_query_source if summary.arms else "n/a"
    if summary.arms:
        floor_note = f"{people(summary.arms[0].seconds_per_query * 1000)} ms, {floor_note}"
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            summary=summary,
            charts=charts,
            failures=failures[:20],
            scenario=scenario_rows(dict(manifest.get("scenario") or {})),
            versions=dict(manifest.get("versions") or {}),
            host=dict(manifest.get("host") or {}),
            inits=dict(manifest.get("inits") or {}),
            git_commit=manifest.get("git_commit"),
            floor_note=floor_note,
            says=what_this_run_says(folder, summary),
            managed=[a for a in summary.arms if a.ee_concurrency_limit is not None],
            generated_at=(generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
    )


def build_report(run_dir: Path) -> Path:
    """Writes metrics.csv (from samples, if not collected yet), summary.json, charts/*.png
    and report.html; returns the report's path. InputError names a missing input file."""
    folder = RunFolder.open(run_dir)
    folder.require(LOCUST_STATS, "Locust writes it during `poolbench run`")
    frame, fresh = load_dataset(folder)
    # A fresh metrics.csv (hundreds of MB for a long run) is written on a worker thread while
    # the charts render: its disk writes release the GIL. Nothing else is written unless it
    # succeeded.
    with ThreadPoolExecutor(max_workers=1) as pool:
        writing = pool.submit(dataset.write_metrics, frame, folder.file(METRICS)) if fresh else None
        summary = summarize(run_dir, frame=frame, write=False)
        history_path = folder.file(LOCUST_HISTORY)
        history: pd.DataFrame | None = (
            read_history(history_path) if history_path.is_file() else None
        )
        failures_path = folder.file(LOCUST_FAILURES)
        failures = read_failures(failures_path) if failures_path.is_file() else []
        records = load_records(folder)
        charts = chart_module.render_charts(frame, history, summary, records)
        if writing is not None:
            writing.result()
    chart_module.write_charts(charts, folder.path)
    html = render_html(folder, summary, charts, failures)
    write_json_atomic(folder.file(SUMMARY), summary.to_json())
    report = folder.file(REPORT)
    write_text_atomic(report, html)
    return report
