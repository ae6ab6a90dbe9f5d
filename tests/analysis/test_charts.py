"""Chart decisions that hold whatever the pixels: one time axis for every time chart of a run,
and a per-EE pools chart that stays readable with a hundred standard EEs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib import dates as mdates

from analysis import charts
from analysis.collect import collect
from analysis.dataset import read_metrics
from analysis.locust_results import read_history
from analysis.summary import summarize
from tests.analysis.factory import RunSpec, make_run_folder


def _times(series: pd.Series) -> tuple[float, float]:
    naive = pd.DatetimeIndex(series).tz_convert(None)
    return float(mdates.date2num(naive.min())), float(mdates.date2num(naive.max()))  # type: ignore[no-untyped-call]


def test_every_time_chart_shares_one_window(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec())
    collect(run)
    frame = read_metrics(run / "metrics.csv")
    history = read_history(run / "locust_stats_history.csv")

    window = charts.time_window(frame["time"], history["time"])

    samples, locust = _times(frame["time"]), _times(history["time"])
    assert window == (min(samples[0], locust[0]), max(samples[1], locust[1]))
    # A history that starts 6 s later (Locust's first interval) does not move the window.
    later = charts.time_window(frame["time"], history["time"] + pd.Timedelta(seconds=6))
    assert later is not None and later[0] == samples[0]


def test_pools_chart_renders_standard_as_a_band(tmp_path: Path) -> None:
    run = make_run_folder(tmp_path, RunSpec(users=40))
    collect(run)
    frame = read_metrics(run / "metrics.csv")
    summary = summarize(run, write=False)
    standard_ees = frame[frame["source"].astype(str).str.startswith("pgbouncer:")]
    assert standard_ees["source"].nunique() > charts.MAX_EE_LINES  # the band branch runs

    chart = charts.pools(frame, summary, charts.time_window(frame["time"]))

    assert chart is not None and chart.png.startswith(b"\x89PNG")
    assert "a band from the least to the most" in chart.caption
    (tmp_path / "pools.png").write_bytes(chart.png)


def test_ee_numbers_sort_numerically() -> None:
    sources = ["pgbouncer:standard-10", "pgbouncer:standard-9", "pgbouncer:standard-100"]
    assert sorted(sources, key=charts._ee_number) == [
        "pgbouncer:standard-9",
        "pgbouncer:standard-10",
        "pgbouncer:standard-100",
    ]
