"""AWS failures after the run reach the user as one line (collect, the probe), never a
traceback. The clients are real boto3 ones; only what answers them stands in for AWS (an
empty credential chain, a closed port, botocore's Stubber)."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from analysis.probe_sampler import ProbeSampler
from poolbench.cli import main
from tests.analysis.factory import RunSpec, make_run_folder


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_collect_without_credentials_is_one_line_exit_2(
    no_credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run_folder(tmp_path, RunSpec(target="aws"))
    code = main(["collect", str(run), "--target", "aws", "--no-wait"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    # (only our lines: asyncio may print about an earlier test's loop when it is collected)
    assert [line for line in err.splitlines() if line.startswith("poolbench")] == [
        "poolbench: error: no AWS credentials found: configure AWS credentials (aws configure, "
        "AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for the account the stack is "
        "deployed in"
    ]


def test_collect_against_an_unreachable_endpoint_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    run = make_run_folder(tmp_path, RunSpec(target="aws"))
    started = time.monotonic()
    code = main(["collect", str(run), "--target", "aws", "--no-wait"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1, err
    assert err[0].startswith(f"poolbench: error: cannot reach http://127.0.0.1:{port}/: check")
    assert f"AWS_ENDPOINT_URL (http://127.0.0.1:{port})" in err[0]
    assert time.monotonic() - started < 60


def _lambda() -> Stubber:
    client = boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    ).client("lambda")
    return Stubber(client)


def test_probe_counts_samples_and_failures_and_keeps_the_first_real_error(
    tmp_path: Path,
) -> None:
    stub = _lambda()
    error = {"errorMessage": "connection to server at 10.0.3.7 failed: timeout",
             "errorType": "OperationalError"}  # fmt: skip
    good = {"time": "2026-11-22T10:00:00.000Z", "arms": {"standard": {"DatabaseConnections": 3}}}
    for payload, function_error in (
        (json.dumps(error), "Unhandled"),
        (json.dumps(good), None),
        ("<html>Bad Gateway</html>", None),
    ):
        answer: dict[str, object] = {"StatusCode": 200, "Payload": io.BytesIO(payload.encode())}
        if function_error:
            answer["FunctionError"] = function_error
        stub.add_response("invoke", answer)
    stub.add_client_error("invoke", "ResourceNotFoundException", "Function not found: probe")
    samples = tmp_path / "samples.jsonl"
    sampler = ProbeSampler("probe", samples, stub.client, interval_s=0.1)
    with stub:
        for _ in range(4):
            sampler.sample_once()
    summary = sampler.summary()
    assert (summary["samples"], summary["failures"]) == (1, 3)
    # The function's own message, not "Expecting value: line 1 column 1"
    assert summary["first_error"] == (
        "function error OperationalError: connection to server at 10.0.3.7 failed: timeout"
    )
    assert summary["interval_s"] == 0.1
    assert [json.loads(line) for line in samples.read_text().splitlines()] == [good]
