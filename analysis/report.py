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

TEMPLATES = Path(__file__).parent / "templates"


def _num(value: float | None, digits: int = 0) -> str:
    """Numbers for the table: missing shows as 'n/a', never as 0."""
    if value is None:
        return "n/a"
    if digits == 0 and float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.{digits or 1}f}"


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "n/a" if value is None else str(value)


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
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, list | tuple):
            text = ", ".join(str(v) for v in value)
        elif isinstance(value, float):
            text = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = str(value)
        rows.append((label, f"{text}{unit}"))
    return rows


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
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
        floor_note = f"{summary.arms[0].seconds_per_query * 1000:g} ms, {floor_note}"
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
