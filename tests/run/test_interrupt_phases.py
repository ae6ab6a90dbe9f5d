"""SIGINT or SIGTERM at every phase of a real `poolbench run` and `poolbench local up`: the
command exits within the bound (10 s), keeps its run folder (the manifest says where it was
interrupted) and leaves no process of its stack running.

`run`'s stack start and load and a serving `local up` are covered next to the commands' other
tests (tests/run/test_run_local.py, tests/local/test_stack.py); these are the rest: EE
scale-out (both commands), `local up`'s stack start, collect and report. Each waits for the
phase in the command's own output (its run folder, its log), never for a guessed number of
seconds.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from pathlib import Path

import pytest

from tests.interrupt import Interrupted, interrupt_poolbench
from tests.local.http import fire
from tests.run.test_run_local import only_run_dir

pytestmark = pytest.mark.local

BOUND_S = 10.0
USERS = 24


def ee_folders(stack_dir: Path, arm: str) -> list[Path]:
    """The EEs an arm has begun to create: each makes its folder first thing in its init."""
    return sorted((stack_dir / "ees").glob(f"{arm}-*"))


def initialised(ee_dir: Path) -> bool:
    """Its init got as far as the runtime (runtime.log is made when it is spawned): an EE
    without one was still being created."""
    return (ee_dir / "runtime.log").exists()


def assert_bounded_and_clean(result: Interrupted) -> None:
    assert result.stopped_in_s <= BOUND_S, result.log[-2000:]
    assert result.running_before > 0
    assert result.left_after == []
    # The orderly stop took everything down: the final sweep, a backstop, found nothing.
    assert "left after teardown" not in result.log, result.log[-2000:]
    assert "took over" not in result.log, result.log[-2000:]
    # and every EE's processes ended on SHUTDOWN/SIGTERM, none waited for its SIGKILL (an EE
    # started after the signal must not inherit it ignored)
    assert "after SHUTDOWN/SIGTERM: killed" not in result.log, result.log[-2000:]
    # and the stack's loop closed with no task pending (each cut-off request printed one)
    assert "Task was destroyed but it is pending" not in result.log, result.log[-2000:]


@pytest.mark.parametrize(
    ("arm", "sig"),
    [("standard", signal.SIGINT), ("managed", signal.SIGTERM)],
    ids=["standard-SIGINT", "managed-SIGTERM"],
)
def test_an_interrupt_during_ee_scale_out_of_run_stops_within_the_bound(
    tmp_path: Path, arm: str, sig: signal.Signals
) -> None:
    # Given 24 users arriving at once: on the standard arm 24 cold starts on 2 cores, a few
    # at a time; on the managed arm EEs of 8 slots that the scaler adds from 1 up to 5
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--arms", arm, "--users", str(USERS)]
    args += ["--spawn-rate", "1000", "--duration", "120", "--sleep-ms", "3000"]
    args += ["--slots-per-ee", "8", "--min-ees", "1", "--scale-delay", "0", "--out", str(out)]
    started = 0 if arm == "standard" else 1  # the managed arm's EE ready before the load

    def scaling_out() -> bool:
        stacks = list(out.glob("*/stack"))
        if not stacks:
            return False
        ees = ee_folders(stacks[0], arm)
        return len(ees) > started and not all(initialised(ee) for ee in ees)

    # When the signal comes while EEs are being created
    result = interrupt_poolbench(args, tmp_path / "run.log", ready=scaling_out, sig=sig)

    # Then the run stopped within the bound, kept its folder, and left nothing
    assert result.returncode == 130, result.log[-2000:]
    run_dir = only_run_dir(out)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["interrupted_in"] == "load"
    assert_bounded_and_clean(result)


def test_sigint_during_ee_scale_out_of_local_up_stops_within_the_bound(tmp_path: Path) -> None:
    # Given `local up` serving the standard arm, and 24 requests sent to it at once (24 cold
    # starts, a few at a time on 2 cores)
    outputs = tmp_path / "outputs.json"
    stack_dir = tmp_path / "stack"
    args = ["local", "up", "--arms", "standard", "--outputs-file", str(outputs)]
    args += ["--run-dir", str(stack_dir)]
    clients: list[threading.Thread] = []

    def scaling_out() -> bool:
        if not outputs.exists():
            return False
        if not clients:
            (stack_outputs,) = json.loads(outputs.read_text()).values()
            url = stack_outputs["ApiUrl"] + "standard"
            client = threading.Thread(
                target=lambda: _fire_ignoring_errors(url, USERS), name="load", daemon=True
            )
            client.start()
            clients.append(client)
        standard = ee_folders(stack_dir, "standard")
        return len(standard) >= 2 and not all(initialised(ee) for ee in standard)

    # When Ctrl-C comes while the EEs are being created
    result = interrupt_poolbench(args, tmp_path / "up.log", ready=scaling_out)
    for client in clients:
        client.join(30)

    # Then local up stopped within the bound and left nothing; its stop began at once, and
    # nothing was spawned after it began: an EE whose init had not got to its runtime never did
    assert result.returncode == 0, result.log[-2000:]
    assert not all(initialised(ee) for ee in ee_folders(stack_dir, "standard"))
    assert_bounded_and_clean(result)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_the_stack_start_of_local_up_stops_within_the_bound(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # Given `local up` starting 3 managed EEs of 32 workers each (seconds on 2 cores)
    log = tmp_path / "up.log"
    stack_dir = tmp_path / "stack"
    args = ["local", "up", "--arms", "managed", "--slots-per-ee", "32"]
    args += ["--run-dir", str(stack_dir), "--outputs-file", str(tmp_path / "outputs.json")]

    def starting() -> bool:
        return bool(ee_folders(stack_dir, "managed"))  # its EEs have begun their init

    # When the signal comes while they start
    result = interrupt_poolbench(args, log, ready=starting, sig=sig)

    # Then it never got to serve, stopped within the bound and left nothing
    assert result.returncode == 0, result.log[-2000:]
    assert "serving" not in result.log
    assert not (tmp_path / "outputs.json").exists()
    assert_bounded_and_clean(result)


def _fire_ignoring_errors(url: str, n: int) -> None:
    """The requests the stop cuts off fail; that is not what the test is about."""
    with contextlib.suppress(Exception):  # a cut-off connection is the expected end
        fire(url, n, sleep_ms=3000)


@pytest.mark.parametrize(
    ("phase", "sig", "sigint_ignored"),
    [
        ("collect", signal.SIGINT, False),
        ("report", signal.SIGTERM, False),
        # started as `poolbench run ... &` from a script: SIGINT inherited ignored
        ("collect", signal.SIGINT, True),
    ],
    ids=["collect-SIGINT", "report-SIGTERM", "collect-SIGINT-inherited-ignored"],
)
def test_an_interrupt_during_collect_or_report_stops_at_once_and_says_how_to_finish(
    tmp_path: Path, phase: str, sig: signal.Signals, sigint_ignored: bool
) -> None:
    # Given a small local run whose collect or report step is held (--slow-phase, for tests
    # only: a small run's steps are over in well under a second, too short to hit)
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    args = ["run", "--preset", "smoke", "--arms", "managed", "--users", "1", "--requests", "2"]
    args += ["--sleep-ms", "0", "--slow-phase", f"{phase}:60", "--out", str(out)]
    started = {"collect": "collecting metrics ...", "report": "building the report ..."}[phase]

    def in_phase() -> bool:
        return log.exists() and started in log.read_text()

    # When the signal comes once the run says the step has begun
    result = interrupt_poolbench(
        args, log, ready=in_phase, sig=sig, inherit_sigint_ignored=sigint_ignored
    )

    # Then it stops within the bound (nothing is left to stop: the stack went with the load),
    # the load's data is complete and kept, and it says how to finish the step later
    assert result.returncode == 130, result.log[-2000:]
    assert result.stopped_in_s <= BOUND_S
    run_dir = only_run_dir(out)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed"  # the load was; the report is what is missing
    assert manifest["interrupted_in"] == phase
    assert (run_dir / "locust_stats.csv").exists() and (run_dir / "samples.jsonl").exists()
    assert (run_dir / "metrics.csv").exists() is (phase == "report")
    assert not (run_dir / "report.html").exists()
    text = " ".join(result.log.split())
    assert (
        f"interrupted before the report: collect later with `poolbench collect {run_dir}` "
        f"then `poolbench report {run_dir}`" in text
    )
    assert result.left_after == []


def test_slow_phase_is_checked_like_any_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from poolbench.cli import main

    code = main(["run", "--slow-phase", "load:5", "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert "--slow-phase must be PHASE:SECONDS with PHASE one of collect, report" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()
