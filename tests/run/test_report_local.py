"""The report's pieces from a real small local run, read back from the DOM headless Chromium
built: per-EE concurrency against its limit, throttles per second by reason, the cost table,
"What this run says", and every number rounded for people.

The run is made to throttle on both function arms (3 managed EEs of 3 slots, a standard
concurrency limit of 8, for 10 users each; the proxy arm's functions are standard ones), so
every piece has real, non-zero numbers; each figure on the page is checked against the
run's summary.json, which keeps full precision.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg

from analysis.report import people
from poolbench.cli import main
from tests.analysis.test_browser import (
    CHROMIUM,
    MANAGED_BLUE,
    STANDARD_RED,
    chromium_output,
    console_lines,
    has_colour,
)

pytestmark = [
    pytest.mark.local,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]

REASON_BROWN = np.array([0x8C, 0x56, 0x4B]) / 255  # charts.REASON_COLORS["ConcurrencyThrottles"]
LIMIT_ORANGE = np.array([0xFF, 0x7F, 0x0E]) / 255  # charts.LIMIT_COLOR
SLOTS = 3
TOO_PRECISE = re.compile(r"\d\.\d{4,}")
LABELS = {
    "standard": "standard Lambda",
    "managed": "Managed Instances",
    "proxy": "standard Lambda + shared pooler",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One throttled local run over the three arms; its folder, summary.json and the DOM
    Chromium built from its report.html (with no console message)."""
    out = tmp_path_factory.mktemp("report-run")
    argv = ["run", "--preset", "smoke", "--arms", "standard,managed,proxy", "--users", "10"]
    argv += ["--requests", "60", "--sleep-ms", "300", "--slots-per-ee", str(SLOTS)]
    argv += ["--max-ees", "3", "--concurrency-limit", "8", "--max-failure-rate", "1"]
    # throttles are failures: a share of 1 lets every one through without failing the run
    assert main([*argv, "--out", str(out)]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    summary = json.loads((run_dir / "summary.json").read_text())
    dom, stderr = chromium_output(run_dir / "report.html", out / "profile", "--dump-dom")
    assert console_lines(stderr) == []
    return run_dir, summary, dom


def section(dom: str, name: str) -> str:
    """The text of one `<section id=...>` as a person reads it (tags gone, spaces squeezed)."""
    match = re.search(rf'<section id="{name}"[^>]*>(.*?)</section>', dom, re.S)
    assert match, f"no section {name}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


def arm_row(text_html: str, label: str) -> list[str]:
    """Cells of the table row headed by `label`."""
    match = re.search(rf'<th scope="row">{re.escape(label)}</th>(.*?)</tr>', text_html, re.S)
    assert match, label
    return [html.unescape(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))]


def chart(dom: str, name: str) -> np.ndarray:
    figure = dom[dom.index(f'id="chart-{name}"') :]
    data = figure.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    return np.asarray(mpimg.imread(io.BytesIO(base64.b64decode(data))), dtype=float)


def arms(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["arm"]: a for a in summary["arms"]}


def test_ee_concurrency_against_its_limit(run: tuple[Path, dict[str, Any], str]) -> None:
    _, summary, dom = run
    managed = arms(summary)["managed"]
    # The run filled its EEs: the fullest reached the limit the stack was given
    assert managed["ee_concurrency_limit"] == SLOTS
    assert managed["peak_ee_concurrency"] == SLOTS
    table = dom.split('id="ee-concurrency"', 1)[1].split("</section>", 1)[0]
    cells = arm_row(table, "Managed Instances")
    assert cells[:3] == [str(SLOTS), str(SLOTS), "100%"]
    assert cells[3] == people(managed["peak_execution_environments"])
    # Only managed arms have a per-EE limit
    assert "standard Lambda" not in section(dom, "ee-concurrency")
    # The chart: the managed arm's colour (its fullest EE) and the dashed limit
    image = chart(dom, "ee_concurrency")
    assert has_colour(image, MANAGED_BLUE, 100)
    assert has_colour(image, LIMIT_ORANGE, 100), "no limit line"


def test_throttles_per_second_by_reason(run: tuple[Path, dict[str, Any], str]) -> None:
    _, summary, dom = run
    platform = dom.split('id="platform"', 1)[1].split("</table>", 1)[0]
    for arm, label in LABELS.items():
        figures = arms(summary)[arm]
        # Throttled, all for want of concurrency (the local models' only reason)
        assert figures["throttles"] > 0, arm
        assert figures["throttle_reasons"] == {"ConcurrencyThrottles": figures["throttles"]}
        assert figures["peak_throttles_per_s"] >= 1
        cells = arm_row(platform, label)
        assert cells[0] == people(figures["throttles"])
        assert cells[1] == people(figures["peak_throttles_per_s"])
        assert cells[2] == f"ConcurrencyThrottles {people(figures['throttles'])}"
    image = chart(dom, "throttles")
    assert has_colour(image, REASON_BROWN, 50), "no throttle-reason line"
    assert has_colour(image, STANDARD_RED, 50) and has_colour(image, MANAGED_BLUE, 50)


def usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.3f}"


def test_cost_table(run: tuple[Path, dict[str, Any], str]) -> None:
    _, summary, dom = run
    table = dom.split('id="cost"', 1)[1].split("</section>", 1)[0]
    for arm, label in LABELS.items():
        cost = arms(summary)[arm]["cost"]
        assert cost["usd_per_million_requests"] > 0
        cells = arm_row(table, label)
        assert cells[0] == usd(cost["usd_per_million_requests"])
        assert cells[1] == usd(cost["usd_per_hour_at_this_load"])
        assert "estimated from a local run, priced as if on AWS" in cells[2]
    assert "Aurora (shared)" in table


def test_what_this_run_says(run: tuple[Path, dict[str, Any], str]) -> None:
    run_dir, summary, dom = run
    text = section(dom, "what-this-run-says")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for label, arm in (
        ("Standard Lambda", "standard"),
        ("Managed Instances", "managed"),
        ("Standard Lambda + shared pooler", "proxy"),
    ):
        figures = arms(summary)[arm]
        assert figures["peak_db_connections"] > 0
        assert (
            f"{label}: peak {people(figures['peak_db_connections'])} DB connections at 10 users"
            f" per arm, with peak {people(figures['peak_concurrency'])} concurrent requests"
            f" ({figures['db_connections_per_concurrent_request']:.2f} per concurrent request)."
        ) in text
        cost = figures["cost"]
        assert (
            f"{label}: {usd(cost['usd_per_million_requests'])} per million requests, "
            f"{usd(cost['usd_per_hour_at_this_load'])} per hour at this load"
        ) in text
    assert f"max_connections: {people(manifest['stack']['max_connections'])}" in text
    # Not a sweep point: nothing about a fit
    assert "Sweep" not in text and "fitted" not in text


def test_no_number_on_the_page_has_more_than_three_decimals(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    run_dir, summary, dom = run
    # summary.json keeps full precision (the query time the poolers measured, for one)
    assert TOO_PRECISE.search(json.dumps(summary))
    assert TOO_PRECISE.search(json.dumps(json.loads((run_dir / "manifest.json").read_text())))
    # The page's text, less the quoted prices (exact, to check against their source)
    body = dom.split("<body", 1)[1]
    body = re.sub(r'<td class="assumptions">.*?</td>', "", body, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r'src="[^"]*"', "", body)))
    assert TOO_PRECISE.findall(text) == []
    # and the query time shows rounded in the scenario table
    query_ms = json.loads((run_dir / "manifest.json").read_text())["scenario"]["query_ms"]
    assert f"{people(query_ms)} ms" in section(dom, "scenario")
