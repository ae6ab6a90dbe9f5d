"""DB connections every few seconds on AWS: invokes the stack's probe function during the load.

CloudWatch's DatabaseConnections is a 1-minute metric; the probe (functions/probe) counts
pg_stat_activity by role and returns one samples.jsonl line, which we append as it comes.
The Lambda client is injectable (tests use botocore's Stubber; no AWS is reachable here).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def describe_failure(response: Mapping[str, Any], raw: bytes) -> str | None:
    """Why an invoke's answer is not a sample, in the function's own words: Lambda's
    errorType/errorMessage for a function error, else the first bytes of what came back."""
    text = raw.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if "FunctionError" in response:
        if isinstance(payload, dict) and ("errorMessage" in payload or "errorType" in payload):
            kind = payload.get("errorType", response["FunctionError"])
            return f"function error {kind}: {payload.get('errorMessage', '')}".strip()
        return f"function error {response['FunctionError']}: {' '.join(text.split())[:200]}"
    if not isinstance(payload, dict) or not isinstance(payload.get("arms"), dict):
        return f"not a sample (no 'arms' object): {' '.join(text.split())[:200]!r}"
    return None


def error_text(exc: Exception) -> str:
    """One line: AWS's error code and message for a refused invoke, else the exception's."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):
        error = response["Error"]
        return f"invoke refused: {error.get('Code', '?')}: {error.get('Message', '')}".strip()
    return (
        " ".join(f"{type(exc).__name__}: {exc}".split())
        if not isinstance(exc, RuntimeError)
        else " ".join(str(exc).split())
    )


class ProbeSampler:
    def __init__(
        self, function_name: str, samples_file: Path, client: Any, interval_s: float = 5.0
    ) -> None:
        self.function_name = function_name
        self.samples_file = samples_file
        self.client = client
        self.interval_s = interval_s
        self.samples = 0
        self.errors = 0
        self.first_error: str | None = None
        self._stop = threading.Event()

    def sample_once(self) -> None:
        try:
            response = self.client.invoke(FunctionName=self.function_name, Payload=b"{}")
            raw = response["Payload"].read()
            problem = describe_failure(response, raw)
            if problem:
                raise RuntimeError(problem)
        except Exception as exc:  # a missed sample is recorded as missing, never as zero
            self.errors += 1
            message = error_text(exc)
            self.first_error = self.first_error or message
            logger.warning("probe sample failed: %s", message)
            return
        with self.samples_file.open("a") as fh:
            fh.write(json.dumps(json.loads(raw)) + "\n")
        self.samples += 1

    def summary(self) -> dict[str, Any]:
        """The manifest's `probe` object: what was asked, what came back, the first error."""
        return {
            "function": self.function_name,
            "interval_s": self.interval_s,
            "samples": self.samples,
            "failures": self.errors,
            "first_error": self.first_error,
        }

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def probe_sampling(
    outputs: Mapping[str, str],
    samples_file: Path,
    *,
    client: Any = None,
    interval_s: float = 5.0,
) -> Iterator[ProbeSampler | None]:
    """Samples while the block runs; a stack without a probe yields None and samples nothing."""
    function_name = outputs.get("ProbeFunctionName")
    if not function_name:
        yield None
        return
    if client is None:
        import boto3
        from botocore.config import Config

        # The stack's Region, whatever the shell says; short timeouts so a stuck invoke
        # cannot hold the end of the run.
        client = boto3.session.Session(region_name=outputs.get("Region")).client(
            "lambda",
            config=Config(
                retries={"mode": "standard", "total_max_attempts": 2},
                connect_timeout=5,
                read_timeout=30,
            ),
        )
    sampler = ProbeSampler(function_name, samples_file, client, interval_s)
    thread = threading.Thread(target=sampler.run, name="probe-sampler", daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        sampler.stop()
        thread.join(30)
