"""A user's shell, not the test's: started from any folder and at a low open-file limit.

Both were quietly wrong once: from another folder every standard request failed (a relative
log path handed to the runtime zygote, which changes directory first), and at Debian's default
soft limit of 1024 a 300-user run failed requests with EMFILE and still printed a verdict.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.interrupt import interrupt_poolbench
from tests.local.http import fire, statuses
from tests.run.test_run_local import locust_requests, only_run_dir

pytestmark = pytest.mark.local


def poolbench_in(
    cwd: Path, args: list[str], limits: tuple[int, int] | None = None
) -> subprocess.CompletedProcess[str]:
    """`poolbench ARGS` as a user would start it: its own folder, its own shell's limits."""
    preexec: Callable[[], None] | None = None
    if limits is not None:
        nofile = limits

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    return subprocess.run(
        [sys.executable, "-m", "poolbench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=preexec,
        check=False,
    )


def test_run_from_another_folder_serves_both_arms(tmp_path: Path) -> None:
    # Given a shell in a folder that is not the checkout, with a relative --out
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["run", "--preset", "smoke", "--users", "4", "--requests", "8", "--sleep-ms", "100"]

    result = poolbench_in(elsewhere, [*args, "--no-report", "--out", "out"])

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = only_run_dir(elsewhere / "out")
    assert locust_requests(run_dir) == {"standard": (8, 0), "managed": (8, 0)}
    # Every EE's files stay in its own folder: no nested copy of the run folder inside it
    ees = run_dir / "stack" / "ees"
    assert sorted(p.name for p in (ees / "standard-1").iterdir()) == [
        "extensions.log",
        "pooler",
        "runtime.log",
    ]
    assert (ees / "managed-1" / "pooler" / "pgbouncer.ini").exists()
    nested = [p for p in ees.rglob("*") if "out" in p.relative_to(ees).parts]
    assert nested == []


def test_local_up_from_another_folder_serves_both_arms(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outputs = elsewhere / "outputs.json"
    args = ["local", "up", "--outputs-file", "outputs.json", "--run-dir", "stack"]
    replies: dict[str, dict[int, int]] = {}

    def serve_both_arms() -> bool:
        if not outputs.exists():
            return False
        (values,) = json.loads(outputs.read_text()).values()
        for arm in ("standard", "managed"):
            replies[arm] = statuses(fire(values["ApiUrl"] + arm, 4, sleep_ms=50))
        return True

    result = interrupt_poolbench(args, tmp_path / "up.log", ready=serve_both_arms, cwd=elsewhere)

    assert result.returncode == 0, result.log[-2000:]
    assert replies == {"standard": {200: 4}, "managed": {200: 4}}
    assert (elsewhere / "stack" / "ees" / "standard-1" / "runtime.log").exists()
    assert result.left_after == []


def test_a_low_soft_limit_is_raised_and_the_run_has_no_failures(tmp_path: Path) -> None:
    # Given a soft limit of 256, too few for 40 standard EEs (about 6 descriptors each), and a
    # hard limit above what the run needs
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 4096, "this test needs a hard open-file limit of at least 4096"
    args = ["run", "--preset", "smoke", "--arms", "standard", "--users", "40"]
    args += ["--requests", "40", "--sleep-ms", "200", "--no-report", "--out", "out"]

    result = poolbench_in(tmp_path, args, limits=(256, hard))

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Too many open files" not in result.stdout + result.stderr
    run_dir = only_run_dir(tmp_path / "out")
    assert locust_requests(run_dir) == {"standard": (40, 0)}
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"


def test_a_scenario_beyond_the_hard_limit_is_refused_in_one_line(tmp_path: Path) -> None:
    args = ["run", "--preset", "smoke", "--arms", "standard", "--users", "300", "--out", "out"]

    result = poolbench_in(tmp_path, args, limits=(512, 512))

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "open files" in result.stderr
    assert "ulimit -n" in result.stderr
    assert not (tmp_path / "out").exists()


# The guard switched off, so the run really meets EMFILE; in a process of its own, since a
# process that ran out of descriptors leaves sockets and tasks half-made behind.
_WITHOUT_THE_GUARD = """
import resource, sys
import poolbench.cli_run
from poolbench.cli import main
poolbench.cli_run.ensure_open_files = lambda needed: needed
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_that_runs_out_of_descriptors_anyway_is_failed(tmp_path: Path) -> None:
    # Given 60 standard EEs in a process allowed 300 open files
    args = ["run", "--preset", "smoke", "--arms", "standard", "--users", "60"]
    args += ["--requests", "60", "--sleep-ms", "500", "--no-report", "--out", "out"]

    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_THE_GUARD, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    # Then it is not reported as complete, and says why, once
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    manifest = json.loads((only_run_dir(tmp_path / "out") / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "ran out of open files" in manifest["error"]
    assert result.stderr.count("Too many open files") <= 1
