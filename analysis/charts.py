"""Every chart poolbench draws (matplotlib, Agg, no pyplot state): the one place that plots.

Charts are returned as PNG bytes so the report can embed them without reading files back;
`write_charts` also saves them under charts/ for people who want the images alone.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis import dataset
from analysis import host as host_module
from analysis import requests as request_records
from analysis.cloudwatch_source import period_s
from analysis.runfolder import CHARTS, write_bytes_atomic
from analysis.summary import THROTTLE_REASONS, RunSummary, per_second
from functions import contract

DPI = 100
MAX_EE_LINES = 8
SERVER_METRICS = ["PoolServerActive", "PoolServerIdle", "PoolServerUsed", "PoolServerLogin"]
TIME_FORMAT = mdates.DateFormatter("%H:%M:%S")  # type: ignore[no-untyped-call]  # untyped in mpl
COLORS = {
    "standard": "#d62728",
    "managed": "#1f77b4",
    "proxy": "#2ca02c",
    "direct": "#ff7f0e",
    "managed-direct": "#9467bd",
}


@dataclass(frozen=True)
class Chart:
    """One rendered chart: file name (without .png), a title for the report, the PNG."""

    name: str
    title: str
    caption: str
    png: bytes


def _tick(label: str) -> str:
    """An arm's label on two lines when long ("Managed Instances without a pooler"), so four
    arms' labels do not run into each other under their bars."""
    return textwrap.fill(label, 20)


def _color(arm: str, index: int) -> str:
    return COLORS.get(arm, f"C{index + 3}")


TimeWindow = tuple[float, float]  # matplotlib date numbers


def time_window(*times: pd.Series | None) -> TimeWindow | None:
    """One time axis for every time chart of a run: from the first to the last time any of
    them has (the samples start with the stack, Locust's history some seconds later)."""
    known = [pd.DatetimeIndex(t) for t in times if t is not None and len(t)]
    if not known:
        return None
    first = min(t.min() for t in known)
    last = max(t.max() for t in known)
    # date2num is untyped in matplotlib
    start, end = (float(mdates.date2num(t)) for t in _x(pd.DatetimeIndex([first, last])))  # type: ignore[no-untyped-call]
    return (start, end) if end > start else None


def _render(
    fig: Figure, summary: RunSummary | None = None, window: TimeWindow | None = None
) -> bytes:
    FigureCanvasAgg(fig)
    # every time axis reads as UTC clock time, whatever the span (found before any is set:
    # axes that share x share their formatter too)
    time_axes = [
        ax
        for ax in fig.axes
        if isinstance(ax.xaxis.get_major_formatter(), mdates.AutoDateFormatter)
    ]
    for ax in time_axes:
        ax.xaxis.set_major_formatter(TIME_FORMAT)
        if window is not None:
            ax.set_xlim(*window)
        _mark_faults(ax, summary)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _mark_faults(ax: Axes, summary: RunSummary | None) -> None:
    """Every time chart shows when each injected fault struck (`run --fault`)."""
    for fault in summary.faults if summary else []:
        at = fault.get("at")
        if not isinstance(at, str):
            continue
        when = _x(pd.DatetimeIndex([pd.Timestamp(at)]))[:1]
        ax.vlines(when, 0, 1, transform=ax.get_xaxis_transform(), colors="crimson", linestyles="--")
        ax.annotate(
            str(fault.get("kind")),
            (when[0], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            color="crimson",
            fontsize=8,
        )


def _x(index: pd.Index) -> np.ndarray:
    """UTC times as naive datetime64 for matplotlib's date axis."""
    return np.asarray(pd.DatetimeIndex(index).tz_convert(None))


def _legend(ax: Axes, **options: Any) -> None:
    """A legend only where something is labelled (a run with no successful request draws no
    latency line; matplotlib warns about an empty legend)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _legend_outside(ax: Axes, fontsize: int = 8) -> None:
    """Legend to the right of the axes, never on the data (constrained layout makes room)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=fontsize, frameon=False)


def _arm_panel(
    ax: Axes, title: str, ylabel: str, *, top: float | None = None, legend_fontsize: int = 7
) -> None:
    """One arm's panel of a per-arm chart: its name top left, counts from zero (top: a fixed
    upper limit, None keeps matplotlib's), a light grid, the legend outside."""
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0, top=top)
    ax.grid(alpha=0.3)
    _legend_outside(ax, legend_fontsize)


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center", transform=ax.transAxes)


def timeline(frame: pd.DataFrame, summary: RunSummary, window: TimeWindow | None = None) -> Chart:
    """Per arm, one panel on a shared time axis: concurrency, DB connections, the floor."""
    arms = summary.arms
    fig = Figure(figsize=(10, 2.6 * max(len(arms), 1)), layout="constrained")
    axes = fig.subplots(max(len(arms), 1), 1, sharex=True, squeeze=False)[:, 0]
    for ax, arm in zip(axes, arms, strict=False):
        concurrency = dataset.series(frame, arm.arm, contract.CONCURRENT_EXECUTIONS)
        connections = dataset.series(frame, arm.arm, contract.DATABASE_CONNECTIONS)
        if concurrency.empty and connections.empty:
            _no_data(ax, "concurrency or DB connection samples")
        if not concurrency.empty:
            ax.plot(
                _x(concurrency.index),
                concurrency.to_numpy(),
                label="concurrent requests",
                color="0.35",
                linewidth=1.2,
            )
        if not connections.empty:
            ax.plot(
                _x(connections.index),
                connections.to_numpy(),
                label="DB connections",
                color=_color(arm.arm, 0),
                linewidth=1.6,
            )
        if arm.littles_law_floor is not None:
            ax.axhline(
                arm.littles_law_floor,
                color="0.2",
                linestyle=":",
                linewidth=1.2,
                label=f"Little's-law floor ({arm.littles_law_floor:.2g})",
            )
        _arm_panel(ax, arm.label, "count", legend_fontsize=8)
    axes[-1].set_xlabel("time (UTC)")
    return Chart(
        "timeline",
        "Concurrency and DB connections over time",
        "Per arm: concurrent requests (ConcurrentExecutions) and DB connections on one "
        "time axis; the dotted line is the Little's-law floor.",
        _render(fig, summary, window),
    )


def peaks(summary: RunSummary) -> Chart:
    """Grouped bars: peak concurrency, peak DB connections and peak EEs per arm."""
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    measures = [
        ("peak concurrency", "peak_concurrency"),
        ("peak DB connections", "peak_db_connections"),
        ("peak execution environments", "peak_execution_environments"),
    ]
    positions = np.arange(len(summary.arms))
    width = 0.8 / len(measures)
    for i, (name, attribute) in enumerate(measures):
        values: list[float | None] = [getattr(a, attribute) for a in summary.arms]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(positions + (i - 1) * width, heights, width, label=name, color=f"C{i}")
        for bar, value in zip(bars, values, strict=True):
            text = "n/a" if value is None else f"{value:g}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    floors = [a.littles_law_floor for a in summary.arms]
    for pos, floor in zip(positions, floors, strict=True):
        if floor is not None:
            ax.hlines(
                floor,
                pos - 0.4,
                pos + 0.4,
                colors="0.2",
                linestyles=":",
                label="Little's-law floor" if pos == 0 else "_nolegend_",
            )
    ax.set_xticks(positions, [_tick(a.label) for a in summary.arms])
    ax.set_ylabel("count")
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, fontsize=8)
    return Chart(
        "peaks",
        "Peaks per arm",
        "Peak concurrent requests, DB connections and execution environments (n/a: not measured).",
        _render(fig, summary),
    )


def ratio(summary: RunSummary) -> Chart:
    """Bars of DB connections per concurrent request; 1.0 is one connection per request."""
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.subplots()
    values = [a.db_connections_per_concurrent_request for a in summary.arms]
    heights = [v if v is not None else 0.0 for v in values]
    colors = [_color(a.arm, i) for i, a in enumerate(summary.arms)]
    bars = ax.bar([_tick(a.label) for a in summary.arms], heights, color=colors)
    for bar, value in zip(bars, values, strict=True):
        text = "n/a" if value is None else f"{value:.2f}"
        ax.annotate(
            text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom"
        )
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="one per request")
    ax.set_ylabel("DB connections / concurrent request")
    ax.set_ylim(0, max([1.1, *[h * 1.15 for h in heights]]))
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, fontsize=8)
    return Chart(
        "ratio",
        "DB connections per concurrent request",
        "Peak DB connections divided by peak concurrency.",
        _render(fig, summary),
    )


def latency(
    history: pd.DataFrame | None, summary: RunSummary, window: TimeWindow | None = None
) -> Chart:
    """Locust's rolling p50/p95/p99 and failures/s per arm over time."""
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    if history is None or history.empty:
        _no_data(top, "Locust history")
        _no_data(bottom, "Locust history")
    else:
        for i, arm in enumerate(summary.arms):
            rows = history[history["arm"] == arm.arm]
            if rows.empty:
                continue
            x = _x(pd.DatetimeIndex(rows["time"]))
            color = _color(arm.arm, i)
            for column, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
                top.plot(
                    x,
                    rows[column].where(rows[column] > 0).to_numpy(),  # 0: no response yet
                    linestyle=style,
                    color=color,
                    label=f"{arm.label} {column[:3]}",
                    linewidth=1.2,
                )
            bottom.plot(x, rows["failures_per_s"].to_numpy(), color=color, label=arm.label)
        _legend_outside(top, 7)
        if history["failures_per_s"].fillna(0).eq(0).all():  # not a -0.05..0.05 axis
            for line in list(bottom.lines):
                line.remove()
            bottom.set_yticks([])
            bottom.text(
                0.5, 0.5, "no failures", ha="center", va="center", transform=bottom.transAxes
            )
        else:
            _legend_outside(bottom, 7)
    top.set_ylabel("response time (ms)")
    top.grid(alpha=0.3)
    bottom.set_ylabel("failures/s")
    bottom.set_xlabel("time (UTC)")
    bottom.grid(alpha=0.3)
    return Chart(
        "latency",
        "Latency percentiles and failures over time",
        "From Locust's history (its percentiles are over a rolling window).",
        _render(fig, summary, window),
    )


def _ee_number(source: str) -> tuple[str, int]:
    """`pgbouncer:standard-10` sorts after `standard-9`: by arm, then the EE's number."""
    name = source.split(":", 1)[-1]
    stem, _, number = name.rpartition("-")
    return (stem, int(number)) if number.isdigit() else (name, 0)


def pools(
    frame: pd.DataFrame, summary: RunSummary, window: TimeWindow | None = None
) -> Chart | None:
    """Per-EE PgBouncer server connections open (local runs), one panel per arm.

    Open = sv_active + sv_idle + sv_used + sv_login: what each EE's pool holds against the
    database (sv_active alone is mostly 0 when sampled, queries being short). With many EEs
    only the largest few get their own line; the total over all EEs is always drawn, so a
    hundred standard EEs stay readable."""
    rows = frame[
        frame["metric"].isin(SERVER_METRICS) & frame["source"].str.startswith("pgbouncer:")
    ]
    rows = rows.dropna(subset=["value"])
    if rows.empty:
        return None
    arms = [a for a in summary.arms if (rows["arm"] == a.arm).any()]
    fig = Figure(figsize=(10, 2.4 * len(arms)), layout="constrained")
    axes = fig.subplots(len(arms), 1, sharex=True, squeeze=False)[:, 0]
    for ax, arm in zip(axes, arms, strict=True):
        table = (
            rows[rows["arm"] == arm.arm]
            .groupby(["time", "source"], observed=True)["value"]
            .sum()
            .unstack("source")
        )
        x = _x(table.index)
        if table.shape[1] <= MAX_EE_LINES:  # a line each, in the EEs' numeric order
            for source in sorted(table.columns, key=_ee_number):
                ax.plot(x, table[source].to_numpy(), linewidth=0.9, label=source.split(":", 1)[1])
        else:  # many EEs (standard: one per request): a band, not a legend of a hundred names
            _ee_band(ax, x, table, _color(arm.arm, 0), "per EE: min to max", "per EE: median", 1.0)
        ax.plot(
            x,
            table.sum(axis=1, min_count=1).to_numpy(),
            color="black",
            linewidth=1.6,
            label=f"all {table.shape[1]} EEs",
        )
        _arm_panel(ax, arm.label, "server connections")
    axes[-1].set_xlabel("time (UTC)")
    return Chart(
        "pools",
        "PgBouncer server connections per execution environment",
        "Open server connections (SHOW POOLS sv_active + sv_idle + sv_used + sv_login) per EE, "
        f"local target; the black line is the arm's sum; over {MAX_EE_LINES} EEs, a band from"
        " the least to the most any EE held, and their median.",
        _render(fig, summary, window),
    )


def _ee_band(
    ax: Axes,
    x: Any,
    table: pd.DataFrame,
    color: str,
    span_label: str,
    median_label: str,
    median_width: float | None = None,
) -> None:
    """Too many EEs for a line each (a legend of a hundred names): the band from the least to
    the most any EE had in each second, and their median."""
    ax.fill_between(
        x,
        table.min(axis=1).to_numpy(dtype=float),
        table.max(axis=1).to_numpy(dtype=float),
        color=color,
        alpha=0.25,
        label=span_label,
    )
    ax.plot(
        x,
        table.median(axis=1).to_numpy(dtype=float),
        color=color,
        linewidth=median_width,  # None: matplotlib's default
        label=median_label,
    )


EE_CONCURRENCY = contract.EE_CONCURRENCY
EE_LIMIT = contract.EE_CONCURRENCY_LIMIT
LIMIT_COLOR = "#ff7f0e"  # not an arm's colour, nor one of the per-EE lines'
REASON_COLORS = {
    "ConcurrencyThrottles": "#8c564b",
    "CPUThrottles": "#e377c2",
    "MemoryThrottles": "#7f7f7f",
}


def managed_arms(frame: pd.DataFrame, summary: RunSummary) -> list[str]:
    """Arms with a per-EE concurrency limit (Managed Instances, whatever the arm is named):
    the local model samples it, CloudWatch publishes it for a capacity provider's function."""
    limits = frame[(frame["metric"] == EE_LIMIT) & frame["value"].notna()]
    known = set(limits["arm"].astype(str))
    return [a.arm for a in summary.arms if a.arm in known]


def ee_concurrency(
    frame: pd.DataFrame, summary: RunSummary, window: TimeWindow | None = None
) -> Chart | None:
    """Per managed arm: how full each EE ran against its limit over time. ConcurrentExecutions
    alone hides it: 48 in flight is 3 EEs at their limit of 16, or 6 EEs half full.

    Local runs sample every EE each second (a line each, or a band over many); CloudWatch
    publishes the arm's ExecutionEnvironmentConcurrency (the maximum over its EEs) per 5-minute
    period, drawn as steps."""
    arms = managed_arms(frame, summary)
    if not arms:
        return None
    fig = Figure(figsize=(10, 2.6 * len(arms)), layout="constrained")
    axes = fig.subplots(len(arms), 1, sharex=True, squeeze=False)[:, 0]
    for index, (ax, arm) in enumerate(zip(axes, arms, strict=True)):
        color = _color(arm, index)
        per_ee = frame[
            (frame["arm"] == arm)
            & (frame["metric"] == EE_CONCURRENCY)
            & frame["source"].str.startswith("ee:")
        ].dropna(subset=["value"])
        if not per_ee.empty:
            table = per_ee.groupby(["time", "source"], observed=True)["value"].max().unstack()
            x = _x(table.index)
            if table.shape[1] <= MAX_EE_LINES:
                # colours outside the arms' own, so the fullest-EE line stays the arm's
                for number, source in enumerate(sorted(table.columns, key=_ee_number)):
                    ax.step(
                        x,
                        table[source].to_numpy(),
                        where="mid",
                        linewidth=0.9,
                        color=f"C{4 + number % 6}",
                        label=source[3:],
                    )
            else:
                _ee_band(ax, x, table, color, f"{table.shape[1]} EEs: min to max", "median")
        # a CloudWatch value stands for the period it starts; a local one for its second
        where = "post" if _from_cloudwatch(frame, arm, EE_CONCURRENCY) else "mid"
        fullest = _whole_periods(
            dataset.series(frame, arm, EE_CONCURRENCY), frame, arm, EE_CONCURRENCY
        )
        if not fullest.empty:
            ax.step(
                _x(fullest.index),
                fullest.to_numpy(),
                where=where,
                color=color,
                linewidth=2.4,
                marker=_period_marker(where),
                label="fullest EE",
            )
        limit = _whole_periods(dataset.series(frame, arm, EE_LIMIT), frame, arm, EE_LIMIT)
        if not limit.empty:
            ax.step(
                _x(limit.index),
                limit.to_numpy(),
                where=where,
                marker=_period_marker(where),
                color=LIMIT_COLOR,
                linestyle="--",
                linewidth=1.8,
                label=f"limit ({limit.max():g} per EE)",
            )
        if per_ee.empty and fullest.empty:
            _no_data(ax, "per-EE concurrency")
        _arm_panel(ax, arm_label_of(summary, arm), "requests in one EE")
    axes[-1].set_xlabel("time (UTC)")
    return Chart(
        "ee_concurrency",
        "Concurrency per execution environment against its limit",
        "ExecutionEnvironmentConcurrency per managed arm: local runs, each EE's most requests in "
        "flight per second (over "
        f"{MAX_EE_LINES} EEs, a band from the emptiest to the fullest and their median); on AWS, "
        "the fullest EE per 5-minute period (CloudWatch's maximum). Dashed: "
        "ExecutionEnvironmentConcurrencyLimit; an EE at it throttles the next request.",
        _render(fig, summary, window),
    )


def _whole_periods(values: pd.Series, frame: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    """A CloudWatch value stands for the period it starts: the last one gets its end too, so
    a step through it spans the period (a short run may have one period only)."""
    if values.empty or not _from_cloudwatch(frame, arm, metric):
        return values
    end = values.index[-1] + pd.Timedelta(seconds=period_s(metric))
    tail = pd.Series([float(values.iloc[-1])], index=pd.DatetimeIndex([end]))
    return pd.Series(pd.concat([values, tail]))


def _period_marker(where: str) -> str | None:
    """CloudWatch periods get a dot each: a short run has one or two, and a step through a
    single point draws nothing."""
    return "o" if where == "post" else None


def _from_cloudwatch(frame: pd.DataFrame, arm: str, metric: str) -> bool:
    rows = frame[(frame["arm"] == arm) & (frame["metric"] == metric)]
    return bool((rows["source"] == "cloudwatch").any())


def arm_label_of(summary: RunSummary, arm: str) -> str:
    return next((a.label for a in summary.arms if a.arm == arm), arm)


def throttles(
    frame: pd.DataFrame, summary: RunSummary, window: TimeWindow | None = None
) -> Chart | None:
    """Throttles per second per arm, and by reason where the source names one (local: the
    function model's; AWS: the Managed Instances reason metrics). None when no arm has a
    Throttles series at all (nothing to draw, not zero)."""
    arms = [a for a in summary.arms if not per_second(frame, a.arm, contract.THROTTLES).empty]
    if not arms:
        return None
    fig = Figure(figsize=(10, 2.2 * len(arms)), layout="constrained")
    axes = fig.subplots(len(arms), 1, sharex=True, squeeze=False)[:, 0]
    for index, (ax, arm) in enumerate(zip(axes, arms, strict=True)):
        rate = _whole_periods(
            per_second(frame, arm.arm, contract.THROTTLES), frame, arm.arm, contract.THROTTLES
        )
        where = "post" if _from_cloudwatch(frame, arm.arm, contract.THROTTLES) else "mid"
        ax.step(
            _x(rate.index),
            rate.to_numpy(),
            where=where,
            marker=_period_marker(where),
            color=_color(arm.arm, index),
            linewidth=3.0,
            label=f"all ({arm.throttles or 0:,.0f})",
        )
        for reason in THROTTLE_REASONS:
            by_reason = _whole_periods(per_second(frame, arm.arm, reason), frame, arm.arm, reason)
            if by_reason.empty:
                continue
            count = arm.throttle_reasons.get(reason)
            ax.step(
                _x(by_reason.index),
                by_reason.to_numpy(),
                where=where,
                marker=_period_marker(where),
                color=REASON_COLORS[reason],
                linestyle="--",
                linewidth=2.0,
                label=f"{reason} ({count or 0:,.0f})",
            )
        _arm_panel(ax, arm.label, "throttles/s", top=max(1.0, float(rate.max()) * 1.1))
    axes[-1].set_xlabel("time (UTC)")
    return Chart(
        "throttles",
        "Throttles per second, by reason",
        "Lambda's Throttles per second (local: each second; AWS: each period's sum over its "
        "length, 60 s, and 300 s for the Managed Instances reason metrics), with the totals "
        "in the legend. Local reasons are the function model's: it throttles only for "
        "concurrency (a full EE, or the concurrency limit); CPU and memory throttles happen "
        "only on AWS.",
        _render(fig, summary, window),
    )


def render_charts(
    frame: pd.DataFrame,
    history: pd.DataFrame | None,
    summary: RunSummary,
    records: pd.DataFrame | None = None,
) -> list[Chart]:
    """All charts for a run, in report order; the per-EE chart only when pools were sampled.

    With per-request records, latency charts come from them (distribution, per second, the
    breakdown); a run folder made before them keeps Locust's rolling-window chart. Every time
    chart shares one time window."""
    window = time_window(frame["time"], None if history is None else history["time"])
    charts = [timeline(frame, summary, window), peaks(summary), ratio(summary)]
    if records is None:
        charts.append(latency(history, summary, window))
    else:
        charts += [latency_cdf(records, summary), latency_over_time(records, summary, window)]
        parts = time_breakdown(records, summary)
        if parts is not None:
            charts.append(parts)
    for optional in (
        ee_concurrency(frame, summary, window),
        throttles(frame, summary, window),
        pools(frame, summary, window),
    ):
        if optional is not None:
            charts.append(optional)
    cpu_chart = host_cpu(frame, summary, window)
    if cpu_chart is not None:
        charts.append(cpu_chart)
    return charts


def write_charts(charts: list[Chart], run_dir: Path) -> list[Path]:
    """Saves each chart as charts/<name>.png (atomically) and returns the paths."""
    paths = []
    for chart in charts:
        path = run_dir / CHARTS / f"{chart.name}.png"
        write_bytes_atomic(path, chart.png)
        paths.append(path)
    return paths


def latency_cdf(records: pd.DataFrame, summary: RunSummary) -> Chart:
    """Per arm, the share of successful requests at or below each latency, on a log axis;
    cold-start requests (sent before their worker's init ended) are marked on their curve."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for i, arm in enumerate(summary.arms):
        rows = records[(records["arm"] == arm.arm) & records["ok"]]
        if rows.empty:
            continue
        order = np.argsort(rows["latency_ms"].to_numpy(), kind="stable")
        latency = rows["latency_ms"].to_numpy()[order]
        share = np.arange(1, len(latency) + 1) / len(latency)
        color = _color(arm.arm, i)
        ax.step(latency, share, where="post", color=color, linewidth=1.5, label=arm.label)
        cold = rows["cold_start"].to_numpy(dtype=bool)[order]
        if cold.any():
            ax.scatter(
                latency[cold],
                share[cold],
                marker="x",
                s=18,
                color=color,
                linewidths=1,
                label=f"{arm.label}: cold start ({int(cold.sum())})",
            )
        drawn = True
    if not drawn:
        _no_data(ax, "successful request")
    else:
        ax.set_xscale("log")
        _legend(ax, fontsize=8, loc="lower right")
    for level in (0.5, 0.99):
        ax.axhline(level, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests at or below")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    return Chart(
        "latency_cdf",
        "Latency distribution (every successful request)",
        "The cumulative share of successful requests at or below each latency, exact from the "
        "per-request records; dotted lines at p50 and p99; x: a request that waited for its "
        "worker's init (cold start).",
        _render(fig, summary),
    )


def latency_over_time(
    records: pd.DataFrame, summary: RunSummary, window: TimeWindow | None = None
) -> Chart:
    """p50 and p99 of the requests that ended in each second, per arm, with cold starts
    marked and failures per second below: the per-request replacement of Locust's history."""
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    if records.empty:
        _no_data(top, "request")
        _no_data(bottom, "request")
    for i, arm in enumerate(summary.arms):
        color = _color(arm.arm, i)
        seconds = request_records.per_second(records, arm.arm)
        if not seconds.empty:
            # each second's figures drawn at its middle, where its requests ended on average
            x = _x(pd.DatetimeIndex(seconds["time"]) + pd.Timedelta(milliseconds=500))
            top.plot(x, seconds["p50_ms"].to_numpy(), color=color, label=f"{arm.label} p50")
            top.plot(
                x,
                seconds["p99_ms"].to_numpy(),
                color=color,
                linestyle=":",
                label=f"{arm.label} p99",
            )
        rows = records[records["arm"] == arm.arm]
        cold = rows[rows["cold_start"] & rows["ok"]]
        if not cold.empty:
            top.scatter(
                _x(pd.DatetimeIndex(pd.to_datetime(cold["end"], unit="s", utc=True))),
                cold["latency_ms"].to_numpy(),
                marker="x",
                s=16,
                color=color,
                label=f"{arm.label} cold start",
            )
        failed = rows[~rows["ok"]]
        if not failed.empty:
            per_s = failed.groupby(np.floor(failed["end"]).astype("int64")).size()
            when = pd.to_datetime(per_s.index.to_numpy(), unit="s", utc=True)
            bottom.plot(
                _x(pd.DatetimeIndex(when)),
                per_s.to_numpy(),
                color=color,
                marker=".",
                label=arm.label,
            )
    if not records.empty:
        top.set_yscale("log")
        _legend(top, fontsize=7, ncol=3)
        if bottom.get_legend_handles_labels()[0]:
            _legend(bottom, fontsize=7)
    top.set_ylabel("latency (ms, log scale)")
    top.grid(alpha=0.3, which="both")
    bottom.set_ylabel("failures/s")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("time (UTC)")
    bottom.grid(alpha=0.3)
    return Chart(
        "latency",
        "Latency percentiles and failures over time",
        "Per second, p50 (solid) and p99 (dotted) of the successful requests that ended in it, "
        "exact from the per-request records; x: cold-start requests; below, failures per second.",
        _render(fig, summary, window),
    )


BREAKDOWN_COLORS = {  # outside matplotlib's default cycle, so no other chart has them
    "sleep_ms": "#d9d9d9",
    "query_ms": "#756bb1",
    "connect_ms": "#fd8d3c",
    "rest_ms": "#636363",
}
BREAKDOWN_LABELS = {
    "sleep_ms": "sleep",
    "query_ms": "queries",
    "connect_ms": "connect (pooler or database)",
    "rest_ms": "rest (gateway + runtime)",
}


def time_breakdown(records: pd.DataFrame, summary: RunSummary) -> Chart | None:
    """Where a successful request's time went, per arm, as mean milliseconds: the whole
    request (left) and everything but the sleep (right), where connect and queries show."""
    parts = {a.arm: request_records.breakdown(records, a.arm) for a in summary.arms}
    arms = [a for a in summary.arms if parts[a.arm] is not None]
    if not arms:
        return None
    fig = Figure(figsize=(10, 1.2 + 0.7 * len(arms)), layout="constrained")
    whole, detail = fig.subplots(1, 2, sharey=True)
    labels = [a.label for a in arms]
    y = np.arange(len(arms))
    for ax, names in (
        (whole, list(request_records.BREAKDOWN_PARTS)),
        (detail, [p for p in request_records.BREAKDOWN_PARTS if p != "sleep_ms"]),
    ):
        left = np.zeros(len(arms))
        for name in names:
            widths = np.array([max((parts[a.arm] or {})[name], 0.0) for a in arms])
            bars = ax.barh(
                y,
                widths,
                left=left,
                color=BREAKDOWN_COLORS[name],
                label=BREAKDOWN_LABELS[name],
                height=0.6,
            )
            if ax is detail:
                for bar, width in zip(bars, widths, strict=True):
                    if width > 0:
                        ax.annotate(
                            f"{width:.1f}",
                            (bar.get_x() + width / 2, bar.get_y() + bar.get_height() / 2),
                            ha="center",
                            va="center",
                            fontsize=7,
                        )
            left += widths
    whole.set_yticks(y, labels)
    whole.invert_yaxis()
    whole.set_xlabel("mean ms per request")
    whole.set_title("whole request", loc="left", fontsize=9)
    detail.set_xlabel("mean ms per request")
    detail.set_title("without the sleep", loc="left", fontsize=9)
    _legend(detail, fontsize=7, loc="lower right")
    for ax in (whole, detail):
        ax.grid(axis="x", alpha=0.3)
    return Chart(
        "breakdown",
        "Where the time goes",
        "Mean per successful request: the handler's sleep, its queries and its connect (to its "
        "pooler, or the database for a direct arm), as the handler timed them; the rest is the "
        "latency Locust measured minus those (gateway, runtime, network, the handler's own "
        "code). An arm that pays a connect on every request shows it on the right.",
        _render(fig, summary),
    )


def host_cpu(
    frame: pd.DataFrame, summary: RunSummary, window: TimeWindow | None = None
) -> Chart | None:
    """The host's CPU per second (local runs): the whole machine, the stack, Locust, with
    the saturation line; None when the run has no host samples (aws)."""
    total = dataset.series(frame, dataset.HOST_ARM, "HostCpuPercent", stats=("Average",))
    if total.empty:
        return None
    fig = Figure(figsize=(10, 3.0), layout="constrained")
    ax = fig.subplots()
    lines = (
        ("HostCpuPercent", "whole host", "black", 1.6),
        ("StackCpuPercent", "the stack's processes", "#17becf", 1.2),
        ("LoadGeneratorCpuPercent", "Locust", "#bcbd22", 1.2),
    )
    for metric, label, color, width in lines:
        values = dataset.series(frame, dataset.HOST_ARM, metric, stats=("Average",))
        if not values.empty:
            ax.plot(_x(values.index), values.to_numpy(), color=color, linewidth=width, label=label)
    ax.axhline(
        host_module.SATURATED_PERCENT,
        color="crimson",
        linestyle=":",
        linewidth=1,
        label=f"saturated ({host_module.SATURATED_PERCENT:g} %)",
    )
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of all cores")
    ax.set_xlabel("time (UTC)")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7, loc="lower right", ncol=4)
    verdict = "saturated" if summary.host_saturated else "not saturated"
    return Chart(
        "host_cpu",
        f"Host CPU ({verdict})",
        "CPU use per second in % of all the machine's cores (/proc/stat), and of it the local "
        "stack's processes and Locust's. At or above the dotted line for a tenth of the load, "
        "the summary marks the host saturated: local latencies then measure the machine.",
        _render(fig, summary, window),
    )
