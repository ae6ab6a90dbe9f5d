"""Was the machine the bottleneck? Host CPU over a local run's load, from metrics.csv.

A local run puts every arm, the database and Locust on the same cores. While they are all
busy, a request waits for a core as well as for Lambda, so its latency measures the machine.
The summary marks such a run: the host is "saturated" when its CPU use was at or above
SATURATED_PERCENT in at least SATURATED_SHARE of the load's seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from analysis import dataset

SATURATED_PERCENT = 90.0
"""A second at or above this share of all cores counts as saturated."""
SATURATED_SHARE = 0.10
"""A tenth of the load's seconds saturated is enough to move the tail."""


@dataclass(frozen=True)
class HostLoad:
    """CPU use of the host over the load window, in % of all cores."""

    seconds: int
    mean_cpu_percent: float
    peak_cpu_percent: float
    saturated_share: float
    """Share of the load's seconds at or above SATURATED_PERCENT."""
    saturated: bool
    mean_stack_cpu_percent: float | None
    mean_load_cpu_percent: float | None


Window = tuple[datetime, datetime]


def _series(
    frame: pd.DataFrame, metric: str, window: tuple[datetime, datetime] | None
) -> pd.Series:
    values = dataset.series(frame, dataset.HOST_ARM, metric, stats=("Average",))
    if window is not None and not values.empty:
        start, end = (pd.Timestamp(t) for t in window)
        values = values[(values.index > start) & (values.index <= end + pd.Timedelta(seconds=1))]
    return values


def host_load(frame: pd.DataFrame, window: Window | None = None) -> HostLoad | None:
    """The host's CPU over the load window (every sample when None); None without samples
    (an aws run, or a local run made before host sampling)."""
    cpu = _series(frame, "HostCpuPercent", window)
    if cpu.empty:
        return None
    stack = _series(frame, "StackCpuPercent", window)
    load = _series(frame, "LoadGeneratorCpuPercent", window)
    share = float((cpu >= SATURATED_PERCENT).mean())
    return HostLoad(
        seconds=len(cpu),
        mean_cpu_percent=round(float(cpu.mean()), 1),
        peak_cpu_percent=float(cpu.max()),
        saturated_share=round(share, 3),
        saturated=share >= SATURATED_SHARE,
        mean_stack_cpu_percent=None if stack.empty else round(float(stack.mean()), 1),
        mean_load_cpu_percent=None if load.empty else round(float(load.mean()), 1),
    )


def saturation_warning(host: HostLoad | None) -> list[str]:
    """The summary's warning for a saturated host, or nothing."""
    if host is None or not host.saturated:
        return []
    return [
        f"Host saturated: CPU was at or above {SATURATED_PERCENT:g} % of all cores for "
        f"{host.saturated_share:.0%} of the load's seconds (mean {host.mean_cpu_percent:g} %): "
        "local latencies measure this machine as much as Lambda."
    ]
