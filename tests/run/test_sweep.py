"""`poolbench sweep` on the local stack: real points, each an ordinary run folder; sweep.csv
checked against every point's own summary.json; bad input; Ctrl-C; sweep.html in Chromium."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg

from analysis.cost import DEFAULT_PRICES
from analysis.sweep_report import CSV_COLUMNS, crossings
from analysis.sweep_report import rows as sweep_rows
from input_errors import InputError
from poolbench.cli import main
from poolbench.sweep import parse_list
from tests.analysis.test_browser import (
    CHROMIUM,
    MANAGED_BLUE,
    STANDARD_RED,
    console_lines,
    has_colour,
    run_chromium,
)
from tests.interrupt import interrupt_poolbench

SMALL = ["--arms", "standard,managed", "--requests", "8", "--sleep-ms", "100", "--preset", "smoke"]


def only_sweep(out: Path) -> Path:
    sweeps = [p for p in out.iterdir() if p.name.startswith("sweep-")]
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def same(cell: str, value: Any) -> bool:
    if value is None:
        return cell == ""
    return float(cell) == pytest.approx(float(value), rel=1e-5)


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    # --prices: the shipped table with requests at $1/M from a named sheet
    prices = out / "my-prices.toml"
    prices.write_text(
        DEFAULT_PRICES.read_text().replace(
            'lambda_requests_per_million = { usd = 0.20, source = "https://aws.amazon.com/lambda/pricing/"',
            'lambda_requests_per_million = { usd = 1.0, source = "test price sheet"',
        )
    )
    assert "test price sheet" in prices.read_text()
    argv = ["sweep", "--users", "2,4", *SMALL, "--slots-per-ee", "4", "--pool-size", "3"]
    assert main([*argv, "--prices", str(prices), "--out", str(out)]) == 0
    return only_sweep(out)


@pytest.mark.local
@pytest.mark.slow
def test_small_sweep_rows_are_the_points_summaries(small_sweep: Path) -> None:
    sweep = json.loads((small_sweep / "sweep.json").read_text())
    assert sweep["status"] == "completed"
    assert [(p["users"], p["status"]) for p in sweep["points"]] == [
        (2, "completed"),
        (4, "completed"),
    ]
    header, rows = read_csv(small_sweep / "sweep.csv")
    assert header == list(CSV_COLUMNS)
    assert [(r["users"], r["arm"]) for r in rows] == [
        ("2", "standard"),
        ("2", "managed"),
        ("4", "standard"),
        ("4", "managed"),
    ]
    for point in sweep["points"]:
        run_dir = small_sweep / point["run_dir"]
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "completed"
        # the knobs reached the point's stack
        assert manifest["stack"]["managed"]["slots_per_ee"] == 4
        assert manifest["stack"]["pooler"]["default_pool_size"] == 3
        assert manifest["scenario"]["users"] == point["users"]
        assert (run_dir / "report.html").is_file()
        summary = json.loads((run_dir / "summary.json").read_text())
        for arm in summary["arms"]:
            row = next(
                r for r in rows if r["users"] == str(point["users"]) and r["arm"] == arm["arm"]
            )
            assert (row["slots_per_ee"], row["pool_size"]) == ("4", "3")
            assert int(row["requests"]) == arm["requests"] == 8
            assert int(row["failures"]) == arm["failures"] == 0
            for column in ("p50_ms", "p95_ms", "p99_ms", "peak_concurrency", "peak_db_connections"):
                assert same(row[column], arm[column]), column
            assert same(row["usd_per_million_requests"], arm["cost"]["usd_per_million_requests"])
            assert "estimated from a local run, priced as if on AWS" in arm["cost"]["assumptions"]
            assert any("$1.0/M (test price sheet" in a for a in arm["cost"]["assumptions"])
        assert (run_dir / "prices.toml").is_file()  # `poolbench report` prices it the same
        # standard Lambda: one EE and one connection per user
        standard = next(a for a in summary["arms"] if a["arm"] == "standard")
        assert standard["peak_db_connections"] == point["users"]
    # managed on AWS prices: at least the capacity provider's 3 instances per hour
    managed = [float(r["usd_per_million_requests"]) for r in rows if r["arm"] == "managed"]
    assert all(v > 0 for v in managed)


@pytest.mark.local
@pytest.mark.slow
def test_report_rebuilds_the_sweep(small_sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (small_sweep / "sweep.csv").read_text()
    (small_sweep / "sweep.csv").unlink()
    (small_sweep / "sweep.html").unlink()

    assert main(["report", str(small_sweep)]) == 0

    assert capsys.readouterr().out.strip() == str(small_sweep / "sweep.html")
    assert (small_sweep / "sweep.csv").read_text() == before
    page = (small_sweep / "sweep.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "would reach max_connections" in page


@pytest.mark.local
@pytest.mark.slow
def test_a_points_report_says_where_the_sweeps_fit_meets_max_connections(
    small_sweep: Path,
) -> None:
    # The last point's report was built with every point measured: its "What this run says"
    # names each per-EE-pool arm's fitted line as sweep.html does; the first point, alone
    # when its report was built, has no fit and says nothing about one
    sweep = json.loads((small_sweep / "sweep.json").read_text())
    fits = crossings(sweep_rows(small_sweep, sweep))
    assert {c.series for c in fits} == {"standard", "managed"}
    first, last = (small_sweep / p["run_dir"] / "report.html" for p in sweep["points"])
    said = html.unescape(last.read_text().split('id="what-this-run-says"', 1)[1])
    said = said.split("</section>", 1)[0]
    for fit in fits:
        assert (
            f"Sweep {sweep['sweep_id']}, over its 2 points measured so far: {fit.sentence()}"
            in said
        )
    assert "max_connections (2,000)" in said
    first_said = first.read_text().split('id="what-this-run-says"', 1)[1].split("</section>")[0]
    assert "Sweep" not in first_said and "fitted" not in first_said


@pytest.mark.local
@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_sweep_html_opens_offline_and_shows_both_arms(small_sweep: Path, tmp_path: Path) -> None:
    page = small_sweep / "sweep.html"
    assert console_lines(run_chromium(page, tmp_path / "p1", "--dump-dom")) == []
    shot = tmp_path / "shot.png"
    run_chromium(page, tmp_path / "p2", f"--screenshot={shot}", "--window-size=1200,2600")
    pixels = np.asarray(mpimg.imread(str(shot)), dtype=float)
    assert has_colour(pixels, MANAGED_BLUE, 300), "no managed-arm colour on the page"
    assert has_colour(pixels, STANDARD_RED, 300), "no standard-arm colour on the page"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", ""], "--users needs a comma-separated list"),
        (["--users", "5,-1"], "--users: -1 is below 1"),
        (["--users", "5,ten"], "--users: 'ten' is not a whole number"),
        (["--users", "5,,10"], "--users needs a comma-separated list"),
        (["--users", "5,5"], "--users: a value is listed twice"),
        (["--users", "5", "--pool-size", "0"], "--pool-size: 0 is below 1"),
        (
            ["--users", "5", "--target", "aws", "--slots-per-ee", "16,64"],
            "deploy with -c perEnvironmentMaxConcurrency=N",
        ),
        (["--users", "5", "--target", "aws", "--pool-size", "5"], "-c defaultPoolSize=N"),
        (["--users", "5", "--prices", "/nonexistent.toml"], "cannot read the price file"),
        (["--users", "5", "--preset", "nope"], "unknown preset 'nope'"),
    ],
)
def test_bad_input_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["sweep", *args, "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_parse_list_and_the_crossing_in_words() -> None:
    assert parse_list("10, 25,50", "--users") == (10, 25, 50)
    with pytest.raises(InputError):
        parse_list("1.5", "--users")
    # two points on 0.5 x + 10: 0.5 x + 10 = 2000 at x = 3980
    row = {"arm": "standard", "slots_per_ee": 16, "pool_size": 20, "_max_connections": 2000}
    table = [
        {**row, "users": 20, "peak_concurrency": 20.0, "peak_db_connections": 20.0},
        {**row, "users": 60, "peak_concurrency": 60.0, "peak_db_connections": 40.0},
    ]
    (crossing,) = crossings(table)
    assert crossing.concurrency == pytest.approx(3980)
    assert "at about 3,980 concurrent requests" in crossing.sentence()
    # a shared pool (proxy) gets no line
    assert crossings([{**r, "arm": "proxy"} for r in table]) == []


@pytest.mark.local
@pytest.mark.slow
def test_ctrl_c_keeps_finished_points_and_marks_the_sweep(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["sweep", "--users", "2,3", *SMALL[:2], "--requests", "60", "--sleep-ms", "100"]
    args += ["--preset", "smoke", "--out", str(out)]

    def second_point_loading() -> bool:
        files = list(out.glob("sweep-*/sweep.json"))
        if not files:
            return False
        try:
            points = json.loads(files[0].read_text())["points"]
        except json.JSONDecodeError:
            return False
        stats = list(files[0].parent.glob("*/locust_stats.csv"))
        return points[0]["status"] == "completed" and len(stats) == 2

    result = interrupt_poolbench(args, tmp_path / "sweep.log", ready=second_point_loading)

    assert result.returncode == 130, result.log[-2000:]
    sweep_dir = only_sweep(out)
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["status"] == "interrupted"
    assert [p["status"] for p in sweep["points"]] == ["completed", "interrupted"]
    interrupted = json.loads(
        (sweep_dir / sweep["points"][1]["run_dir"] / "manifest.json").read_text()
    )
    assert interrupted["status"] == "interrupted"
    _, rows = read_csv(sweep_dir / "sweep.csv")
    assert [(r["users"], r["arm"], r["requests"]) for r in rows][:2] == [
        ("2", "standard", "60"),
        ("2", "managed", "60"),
    ]
    assert "interrupted" in (sweep_dir / "sweep.html").read_text()
    assert result.left_after == []
