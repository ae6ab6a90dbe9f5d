"""Debian's headless Chromium opens report.html from disk with networking off: no console
message, and the screenshot shows the charts (decoded and checked for chart colours)."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from analysis.report import build_report
from tests.analysis.factory import RunSpec, make_run_folder

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]

OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
    "--hide-scrollbars",
]
MANAGED_BLUE = np.array([0x1F, 0x77, 0xB4]) / 255  # charts.COLORS["managed"]
STANDARD_RED = np.array([0xD6, 0x27, 0x28]) / 255  # charts.COLORS["standard"]
CONNECT_ORANGE = np.array([0xFD, 0x8D, 0x3C]) / 255  # charts.BREAKDOWN_COLORS["connect_ms"]
QUERIES_PURPLE = np.array([0x75, 0x6B, 0xB1]) / 255  # charts.BREAKDOWN_COLORS["query_ms"]


def run_chromium(page: Path, profile: Path, *extra: str) -> str:
    """Runs Chromium once in its own process group; returns stderr."""
    return chromium_output(page, profile, *extra)[1]


def chromium_output(page: Path, profile: Path, *extra: str) -> tuple[str, str]:
    """Runs Chromium once in its own process group; returns stdout and stderr. The group is
    killed if it outlives the timeout, so no browser process survives the test."""
    args = [str(CHROMIUM), *OFFLINE_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers (zygote, gpu) of this run only
    assert proc.returncode == 0, stderr[-2000:]
    return stdout, stderr


def console_lines(stderr: str) -> list[str]:
    """Chromium logs every page console message as a `:CONSOLE` line with --enable-logging."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def has_colour(pixels: np.ndarray, colour: np.ndarray, minimum: int) -> bool:
    """True when at least `minimum` pixels are within a small distance of `colour`."""
    distance = np.abs(pixels[:, :, :3] - colour).max(axis=2)
    return int((distance < 0.03).sum()) >= minimum


def test_console_detector_sees_a_console_error(tmp_path: Path) -> None:
    # The negative control: without it a silent detector would pass the real test
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom')</script></body></html>")
    stderr = run_chromium(page, tmp_path / "profile", "--dump-dom")
    assert any("boom" in line for line in console_lines(stderr))


def test_report_opens_offline_without_console_errors_and_shows_charts(
    run_dir: Path, tmp_path: Path
) -> None:
    report = build_report(run_dir)
    # No console message while loading the page from disk with networking off
    dom_err = run_chromium(report, tmp_path / "profile1", "--dump-dom")
    assert console_lines(dom_err) == []
    # The screenshot: the page is not blank and the charts' own colours are on it
    shot = tmp_path / "shot.png"
    stderr = run_chromium(
        report, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,2400"
    )
    assert console_lines(stderr) == []
    pixels = np.asarray(mpimg.imread(str(shot)), dtype=float)
    assert pixels.shape[0] == 2400 and pixels.shape[1] == 1200
    non_white = (pixels[:, :, :3] < 0.95).any(axis=2).mean()
    assert non_white > 0.05, f"screenshot is nearly blank ({non_white:.3f} non-white)"
    assert has_colour(pixels, MANAGED_BLUE, 500), "no managed-arm chart colour on the page"
    assert has_colour(pixels, STANDARD_RED, 500), "no standard-arm chart colour on the page"


def test_record_charts_render_in_the_browser(tmp_path: Path) -> None:
    # Given a run with per-request records
    run = make_run_folder(tmp_path, RunSpec(with_requests=True))
    report = build_report(run)
    # Then the DOM Chromium built from it has the distribution, per-second and breakdown
    # charts, each an image that decodes and shows both arms' colours
    dom, stderr = chromium_output(report, tmp_path / "profile1", "--dump-dom")
    assert console_lines(stderr) == []
    for name in ("latency_cdf", "latency", "breakdown"):
        figure = dom[dom.index(f'id="chart-{name}"') :]
        data = figure.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
        image = np.asarray(mpimg.imread(io.BytesIO(base64.b64decode(data))), dtype=float)
        if name != "breakdown":
            assert has_colour(image, MANAGED_BLUE, 100), name
            assert has_colour(image, STANDARD_RED, 100), name
    # And the page, shot whole, shows the breakdown's own colours (connect, queries)
    shot = tmp_path / "shot.png"
    stderr = run_chromium(
        report, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,9000"
    )
    assert console_lines(stderr) == []
    pixels = np.asarray(mpimg.imread(str(shot)), dtype=float)
    assert has_colour(pixels, CONNECT_ORANGE, 300), "no breakdown connect bar on the page"
    assert has_colour(pixels, QUERIES_PURPLE, 300), "no breakdown queries bar on the page"
