"""A sweep folder -> sweep.csv (one row per point x arm) and a self-contained sweep.html.

Every number comes from the points' own summary.json (rebuilt from their raw files when
missing), so the sweep's table and each point's report.html can never disagree. The charts
put every point on one axis: concurrency. Where an arm with a pool per EE grows its DB
connections in a line, the page says at what concurrency that line would reach the
database's max_connections.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.charts import COLORS
from analysis.runfolder import SUMMARY, write_text_atomic
from functions import contract
from input_errors import InputError

SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"
SWEEP_HTML = "sweep.html"
CSV_COLUMNS = (
    "users",
    "runtime",
    "slots_per_ee",
    "pool_size",
    "arm",
    "requests",
    "failures",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "peak_concurrency",
    "peak_execution_environments",
    "peak_db_connections",
    "db_connections_per_concurrent_request",
    "throttles",
    "usd_per_million_requests",
)
PER_EE_POOL_ARMS = tuple(a.name for a in contract.ARM_SPECS if a.has_layer)
"""Arms whose PgBouncer runs inside every EE: their connections grow with the EEs."""
# Aurora Serverless v2 max_connections by max ACU (FACTS.md), for AWS sweeps.
AURORA_MAX_CONNECTIONS = ((1, 189), (4, 823), (8, 1669), (16, 3360), (32, 5000))


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_JSON
    if not path.is_file():
        raise InputError(f"{sweep_dir} has no {SWEEP_JSON}: run `poolbench sweep` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise InputError(f"{path} must hold an object with a 'points' list")
    return data


def _point_summary(run_dir: Path) -> dict[str, Any] | None:
    """The point's summary.json; rebuilt from its raw files when absent (None: no load ran)."""
    path = run_dir / SUMMARY
    if not path.is_file():
        if not (run_dir / "locust_stats.csv").is_file():
            return None
        from analysis.summary import summarize

        summarize(run_dir)
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    return dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}


def _knob(manifest: dict[str, Any], point: dict[str, Any], name: str) -> Any:
    """The knob as the point ran it: the stack's value (local), the deployment's (aws)."""
    stack = manifest.get("stack") or {}
    if name == "slots_per_ee":
        local = (stack.get("managed") or {}).get("slots_per_ee")
        deployed = (stack.get("outputs") or {}).get("ManagedPerEnvironmentMaxConcurrency")
        value = local if local is not None else deployed
    else:
        value = (stack.get("pooler") or {}).get("default_pool_size")
    if value is None:
        value = point.get(name)
    return int(value) if value is not None and str(value).isdigit() else value


def rows(
    sweep_dir: Path,
    sweep: dict[str, Any],
    current: tuple[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per point x arm, in the order the points ran.

    `current` is (run folder name, summary) of a point whose report is being built: its
    summary is taken as given (its summary.json is not written yet), and it counts even
    though sweep.json records its folder only once its report is done."""
    found: list[dict[str, Any]] = []
    points = list(sweep["points"])
    if current is not None and all(p.get("run_dir") != current[0] for p in points):
        users = (_manifest(sweep_dir / current[0]).get("scenario") or {}).get("users")
        points.append({"users": users, "run_dir": current[0], "status": "running"})
    for point in points:
        if not point.get("run_dir"):
            continue
        run_dir = sweep_dir / str(point["run_dir"])
        if current is not None and point["run_dir"] == current[0]:
            summary: dict[str, Any] | None = current[1]
        else:
            summary = _point_summary(run_dir)
        if summary is None:
            continue
        manifest = _manifest(run_dir)
        for arm in summary.get("arms") or []:
            found.append(
                {
                    "users": point["users"],
                    # the function under test (manifest; runs before the knob: python)
                    "runtime": manifest.get("runtime") or point.get("runtime") or "python",
                    "slots_per_ee": _knob(manifest, point, "slots_per_ee"),
                    "pool_size": _knob(manifest, point, "pool_size"),
                    "arm": arm["arm"],
                    "requests": arm["requests"],
                    "failures": arm["failures"],
                    "p50_ms": arm["p50_ms"],
                    "p95_ms": arm["p95_ms"],
                    "p99_ms": arm["p99_ms"],
                    "peak_concurrency": arm["peak_concurrency"],
                    "peak_execution_environments": arm["peak_execution_environments"]
                    if arm["peak_execution_environments"] is not None
                    else arm.get("peak_execution_environments_serving"),
                    "peak_db_connections": arm["peak_db_connections"],
                    "db_connections_per_concurrent_request": arm[
                        "db_connections_per_concurrent_request"
                    ],
                    "throttles": arm["throttles"],
                    "usd_per_million_requests": (arm.get("cost") or {}).get(
                        "usd_per_million_requests"
                    ),
                    # for the charts, not the CSV
                    "_floor": arm.get("littles_law_floor"),
                    "_max_connections": max_connections_of(manifest),
                    "_status": point.get("status"),
                    "_run_dir": point["run_dir"],
                }
            )
    return found


def max_connections_of(manifest: dict[str, Any]) -> int | None:
    """local: the stack's max_connections; aws: from the deployed max ACU, when recorded."""
    stack = manifest.get("stack") or {}
    if isinstance(stack.get("max_connections"), int):
        return int(stack["max_connections"])
    max_acu = (stack.get("outputs") or {}).get("MaxAcu")
    try:
        acu = float(str(max_acu))
    except (TypeError, ValueError):
        return None
    return next((conns for top, conns in AURORA_MAX_CONNECTIONS if acu <= top), 5000)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(path: Path, table: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table:
        writer.writerow([_csv_value(row[c]) for c in CSV_COLUMNS])
    write_text_atomic(path, buffer.getvalue())


@dataclass(frozen=True)
class Crossing:
    series: str
    slope: float
    intercept: float
    max_connections: int
    concurrency: float | None
    """None: the line does not grow, it never reaches max_connections."""

    def sentence(self) -> str:
        fit = (
            f"{self.series}: fitted line peak DB connections = {self.slope:.2f} x concurrency "
            f"{'+' if self.intercept >= 0 else '-'} {abs(self.intercept):.1f}"
        )
        if self.concurrency is None:
            return f"{fit}; it does not grow, so it never reaches max_connections."
        return (
            f"{fit}; it would reach max_connections ({self.max_connections:,}) at about "
            f"{self.concurrency:,.0f} concurrent requests."
        )


def _x(row: dict[str, Any]) -> float:
    """Concurrency as measured; the users when no concurrency was sampled."""
    value = row["peak_concurrency"]
    return float(value if value is not None else row["users"])


def _series(table: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows per line: the arm, plus the swept knobs (runtime, pooler) when more than one value
    ran; a row without a knob (from before it) counts as one value."""
    knobs = ("runtime", "slots_per_ee", "pool_size")
    vary = [k for k in knobs if len({r.get(k) for r in table}) > 1]
    lines: dict[str, list[dict[str, Any]]] = {}
    for row in table:
        name = " ".join([row["arm"], *(f"{k}={row[k]}" for k in vary)])
        lines.setdefault(name, []).append(row)
    return {k: sorted(v, key=_x) for k, v in lines.items()}


def crossings(table: list[dict[str, Any]]) -> list[Crossing]:
    """Per per-EE-pool line with two or more concurrencies: a least-squares fit and where it
    meets max_connections."""
    found = []
    for name, line in _series(table).items():
        if line[0]["arm"] not in PER_EE_POOL_ARMS:
            continue
        points = [
            (_x(r), float(r["peak_db_connections"]))
            for r in line
            if r["peak_db_connections"] is not None
        ]
        limit = next((r["_max_connections"] for r in line if r["_max_connections"]), None)
        if len({x for x, _ in points}) < 2 or limit is None:
            continue
        xs = np.array([x for x, _ in points], dtype=float)
        ys = np.array([y for _, y in points], dtype=float)
        slope, intercept = (float(v) for v in np.polyfit(xs, ys, 1))
        at = (limit - intercept) / slope if slope > 1e-9 else None
        found.append(Crossing(name, slope, intercept, int(limit), at))
    return found


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _chart(
    table: list[dict[str, Any]], value: str, ylabel: str, title: str, *, db: bool = False
) -> str:
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for index, (name, line) in enumerate(_series(table).items()):
        got = [(_x(r), _value(r, value)) for r in line if _value(r, value) is not None]
        if not got:
            continue
        xs, ys = zip(*got, strict=True)
        colour = COLORS.get(line[0]["arm"], f"C{index + 3}")
        ax.plot(xs, ys, marker="o", color=colour, label=name)
        if db:
            floors = [(_x(r), r["_floor"]) for r in line if r["_floor"] is not None]
            if floors:
                fx, fy = zip(*floors, strict=True)
                ax.plot(fx, fy, linestyle=":", color=colour, label=f"{name} Little's-law floor")
    if db:
        limits = {r["_max_connections"] for r in table if r["_max_connections"]}
        for limit in sorted(limits):
            ax.axhline(limit, color="black", linestyle="--", label=f"max_connections {limit:,}")
        # log-log, so the measured points, the limit and where a fitted line meets it all show
        start = min(_x(r) for r in table)
        for crossing in crossings(table):
            end = max(crossing.concurrency or 0.0, *(_x(r) for r in table))
            ends = np.geomspace(max(start, 1e-3), max(end, start * 1.01), 50)
            ax.plot(
                ends,
                np.clip(crossing.slope * ends + crossing.intercept, 1e-3, None),
                color="grey",
                linewidth=0.8,
                linestyle="-.",
                label=f"{crossing.series} fitted line",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("peak concurrent requests (per arm)" + (", log scale" if db else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no point measured this", transform=ax.transAxes, ha="center")
    return _png(fig)


def _value(row: dict[str, Any], name: str) -> float | None:
    if name == "failure_rate":
        return row["failures"] / row["requests"] if row["requests"] else None
    value = row[name]
    return None if value is None else float(value)


def render_html(sweep: dict[str, Any], table: list[dict[str, Any]]) -> str:
    """The page: status, what was swept, four charts, the crossings in words, the table."""
    charts = [
        _chart(
            table,
            "peak_db_connections",
            "peak DB connections",
            "Peak DB connections vs concurrency",
            db=True,
        ),
        _chart(table, "p99_ms", "p99 latency (ms)", "p99 latency vs concurrency"),
        _chart(table, "failure_rate", "failed requests / requests", "Failure rate vs concurrency"),
        _chart(
            table,
            "usd_per_million_requests",
            "USD per million requests",
            "Cost per million requests vs concurrency (model: analysis/cost.py)",
        ),
    ]
    largest = max((_x(r) for r in table), default=0.0)
    words = [
        f"{c.sentence()} (A straight line through the measured points: beyond the largest "
        f"concurrency measured, {largest:,.0f}, it is an extrapolation.)"
        for c in crossings(table)
    ] or ["No per-EE-pool arm has two concurrencies with DB samples: no fitted line."]
    esc = html.escape
    status = str(sweep.get("status"))
    head = "".join(f"<th>{esc(c)}</th>" for c in CSV_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(_csv_value(r[c]))}</td>" for c in CSV_COLUMNS) + "</tr>"
        for r in table
    )
    ran = {r["_run_dir"]: r for r in table}

    def knob(point: dict[str, Any], name: str) -> str:
        row = ran.get(point.get("run_dir"))
        value = row[name] if row is not None else point.get(name)
        return "default" if value is None else str(value)

    points = "".join(
        f"<li>users {p['users']}, slots_per_ee {knob(p, 'slots_per_ee')}, pool_size "
        f"{knob(p, 'pool_size')}: <b>{esc(str(p.get('status')))}</b>"
        f"{' (' + esc(str(p['run_dir'])) + '/report.html)' if p.get('run_dir') else ''}"
        f"{' - ' + esc(str(p['failure'])) if p.get('failure') else ''}</li>"
        for p in sweep["points"]
    )
    local = (
        "<p>Costs are estimated from a local run, priced as if on AWS (analysis/cost.py; "
        "assumptions in each point's summary.json).</p>"
        if sweep.get("target") == "local"
        else ""
    )
    warn = (
        f"<p class=warn>The sweep is <b>{esc(status)}</b>: only finished points are shown.</p>"
        if status != "completed"
        else ""
    )
    images = "".join(f'<img alt="chart" src="data:image/png;base64,{c}">' for c in charts)
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>poolbench sweep "
        f"{esc(str(sweep.get('sweep_id')))}</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1100px}img{max-width:100%;"
        "display:block;margin:1em 0}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}.warn{color:#b00}"
        "</style></head><body>"
        f"<h1>poolbench sweep {esc(str(sweep.get('sweep_id')))} ({esc(str(sweep.get('target')))})"
        f"</h1><p>Command: <code>{esc(str(sweep.get('command')))}</code></p>{warn}"
        f"<h2>Points</h2><ul>{points}</ul>{local}"
        "<h2>Where the per-EE pools meet max_connections</h2><ul>"
        + "".join(f"<li>{esc(w)}</li>" for w in words)
        + f"</ul><h2>Charts</h2>{images}<h2>sweep.csv</h2><table><tr>{head}</tr>{body}</table>"
        "</body></html>\n"
    )


def build_sweep_report(sweep_dir: Path) -> Path:
    """Writes sweep.csv and sweep.html from sweep.json and the points; returns the page."""
    sweep = read_sweep(sweep_dir)
    table = rows(sweep_dir, sweep)
    write_csv(sweep_dir / SWEEP_CSV, table)
    page = sweep_dir / SWEEP_HTML
    write_text_atomic(page, render_html(sweep, table))
    return page
