"""The AWS probe sampler against botocore's Stubber (no AWS is reachable here): what the probe
returns lands in samples.jsonl line by line, and a failed invoke is missing, not zero."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
from botocore.response import StreamingBody
from botocore.stub import Stubber

from analysis.probe_sampler import ProbeSampler, probe_sampling


def payload(data: object) -> StreamingBody:
    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_samples_are_appended_and_failures_are_skipped(tmp_path: Path) -> None:
    client = boto3.client("lambda", region_name="eu-west-1")
    stub = Stubber(client)
    sample = {"time": "t", "epoch": 1.0, "arms": {"standard": {"DatabaseConnections": 7}}}
    expected = {"FunctionName": "probe-fn", "Payload": b"{}"}
    stub.add_response("invoke", {"StatusCode": 200, "Payload": payload(sample)}, expected)
    stub.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "Payload": payload({"errorMessage": "x"}),
        },
        expected,
    )
    stub.add_client_error("invoke", "TooManyRequestsException", expected_params=expected)
    samples = tmp_path / "samples.jsonl"
    sampler = ProbeSampler("probe-fn", samples, client)

    with stub:
        for _ in range(3):
            sampler.sample_once()

    assert (sampler.samples, sampler.errors) == (1, 2)
    assert [json.loads(line) for line in samples.read_text().splitlines()] == [sample]


def test_a_stack_without_a_probe_samples_nothing(tmp_path: Path) -> None:
    with probe_sampling({"ApiUrl": "https://x"}, tmp_path / "samples.jsonl") as sampler:
        assert sampler is None
    assert not (tmp_path / "samples.jsonl").exists()
