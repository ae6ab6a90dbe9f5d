"""`run --fault`: faults really injected into a real local run, and what each arm went through.

The figures asserted come from the run folder: the manifest's record of what was broken, the
pids that were killed (gone afterwards), the EEs inits (a killed EE is replaced), PostgreSQL's
own log (it restarted), and summary.json's per-arm outcome.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poolbench.cli import main
from tests.run.test_run_local import locust_requests, only_run_dir, summary_arms

pytestmark = [pytest.mark.local, pytest.mark.slow]  # `poolbench run` end to end, or a long bench


def test_faults_are_injected_counted_and_reported(tmp_path: Path) -> None:
    # Given two arms under steady load, a runtime killed 4 s in and the database restarted at 9 s
    args = ["run", "--preset", "smoke", "--arms", "standard,managed", "--users", "4"]
    args += ["--duration", "16", "--sleep-ms", "300", "--min-ees", "2", "--scale-delay", "0"]
    args += ["--fault", "runtime-kill@4", "--fault", "db-restart@9", "--out", str(tmp_path)]

    code = main(args)

    run_dir = only_run_dir(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert code == 0, manifest.get("error")
    # Then each fault struck when asked, each arm that has the part lost one
    kinds = [(f["kind"], f["at_s"]) for f in manifest["faults"]]
    assert kinds == [("runtime-kill", 4.0), ("db-restart", 9.0)]
    killed = manifest["faults"][0]["done"]
    assert set(killed) == {"standard", "managed"}
    for what in killed.values():
        pid = int(what.split("pid ")[1].split()[0])
        assert not Path(f"/proc/{pid}").exists()
    assert "restart" in manifest["faults"][1]["done"]["database"]
    log = (run_dir / "stack" / "postgres" / "postgresql.log").read_text()
    assert log.count("database system is ready to accept connections") == 2
    # the managed EE whose worker died was replaced, not reused: a third init for min 2
    assert manifest["inits"]["managed"]["count"] >= 3
    # and every arm's summary has one outcome per fault, with counts from Locust's history
    arms = summary_arms(run_dir)
    requests = locust_requests(run_dir)
    for arm in ("standard", "managed"):
        outcomes = arms[arm]["faults"]
        assert [o["kind"] for o in outcomes] == ["runtime-kill", "db-restart"]
        assert all(isinstance(o["failures"], int) for o in outcomes)
        assert sum(o["failures"] for o in outcomes) <= requests[arm][1]
        for o in outcomes:
            assert (o["recovery_s"] is None) == (o["reason"] is not None)
    # the killed request failed on each arm: a runtime dies mid-invoke
    assert all(requests[arm][1] >= 1 for arm in ("standard", "managed"))
    report = (run_dir / "report.html").read_text()
    assert "Faults injected" in report
    assert "runtime-kill@4" in report


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("explode@3", "give KIND@SECONDS"),
        ("db-restart", "give KIND@SECONDS"),
        ("db-restart@soon", "is not a number of seconds"),
        ("db-restart@-1", "must not be negative"),
    ],
)
def test_a_bad_fault_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str, message: str
) -> None:
    code = main(["run", "--preset", "smoke", "--fault", fault, "--out", str(tmp_path / "o")])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()
