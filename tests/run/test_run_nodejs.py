"""`poolbench run/sweep --runtime`: bad values refused in one line, and Ctrl-C during a Node.js
run leaves no process (node runtimes, their PgBouncers, PostgreSQL, Locust)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poolbench.cli import main
from tests.interrupt import interrupt_poolbench
from tests.run.test_run_local import locust_requests, only_run_dir

pytestmark = pytest.mark.local


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--runtime", "ruby"], "unknown --runtime 'ruby': choose python or nodejs"),
        (["run", "--runtime", "node"], "unknown --runtime 'node': choose python or nodejs"),
        (
            ["sweep", "--users", "1", "--runtime", "python,ruby"],
            "unknown --runtime 'ruby': choose python or nodejs",
        ),
        (
            ["sweep", "--users", "1", "--runtime", "nodejs,nodejs"],
            "--runtime: a value is listed twice",
        ),
        (["local", "up", "--runtime", "go"], "unknown --runtime 'go': choose python or nodejs"),
    ],
)
def test_bad_runtime_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--run-dir", str(tmp_path / "stack")] if argv[0] == "local" else ["--out", str(tmp_path)]
    code = main([*argv, *out])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # refused before a run folder exists


def test_aws_run_refuses_a_runtime_the_stack_was_not_deployed_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(
        json.dumps({"PoolbenchStack": {"ApiUrl": "https://x/prod/", "Arms": "standard"}})
    )
    code = main(["run", "--target", "aws", "--outputs-file", str(outputs), "--runtime", "nodejs"])
    err = capsys.readouterr().err
    assert code == 2
    assert "runs python; redeploy with `npx cdk deploy -c runtime=nodejs" in err, err


def test_sigint_during_a_nodejs_run_leaves_nothing(tmp_path: Path) -> None:
    # Given a Node.js run of all three arms under load (standard, managed and proxy EEs up)
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--duration", "120", "--runtime", "nodejs"]
    args += ["--arms", "standard,managed,proxy", "--out", str(out)]

    def load_started() -> bool:
        runs = list(out.glob("*/locust_stats.csv"))
        if not runs:
            return False
        seen = locust_requests(runs[0].parent)
        return all(seen.get(arm, (0, 0))[0] > 0 for arm in ("standard", "managed", "proxy"))

    # When Ctrl-C arrives
    result = interrupt_poolbench(args, tmp_path / "run.log", ready=load_started, ready_timeout_s=90)

    # Then the run stops as interrupted, names its runtime, and no process of it is left
    assert result.returncode == 130, result.log[-2000:]
    manifest = json.loads((only_run_dir(out) / "manifest.json").read_text())
    assert (manifest["status"], manifest["runtime"]) == ("interrupted", "nodejs")
    assert result.running_before > 5  # node runtimes, PgBouncers, PostgreSQL, Locust
    assert result.left_after == []


def test_a_managed_direct_nodejs_run_logs_in_to_the_database(tmp_path: Path) -> None:
    """A managed Node.js EE logs in straight to the database (SCRAM) while its worker threads'
    polls are open: the stack gives it the libuv pool the CDK app gives it on AWS
    (contract.node_threadpool_size). At libuv's default 4 every request of this run failed
    (docs/nodejs.md, "A finding")."""
    # Given a Node.js run of the managed-direct arm, concurrent requests on one managed EE
    argv = ["run", "--preset", "smoke", "--runtime", "nodejs", "--arms", "managed-direct"]
    argv += ["--users", "6", "--requests", "12", "--sleep-ms", "200", "--no-report"]
    # When it runs
    code = main([*argv, "--out", str(tmp_path)])
    # Then every request Locust sent was answered, none failed
    assert code == 0
    requests, failures = locust_requests(only_run_dir(tmp_path))["managed-direct"]
    assert (requests, failures) == (12, 0)
