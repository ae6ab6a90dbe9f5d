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
        self._stop = threading.Event()

    def sample_once(self) -> None:
        try:
            response = self.client.invoke(FunctionName=self.function_name, Payload=b"{}")
            payload = json.loads(response["Payload"].read())
            if "FunctionError" in response or not isinstance(payload, dict):
                raise RuntimeError(f"probe failed: {payload}")
        except Exception as exc:  # a missed sample is recorded as missing, never as zero
            self.errors += 1
            logger.warning("probe sample failed: %s", exc)
            return
        with self.samples_file.open("a") as fh:
            fh.write(json.dumps(payload) + "\n")
        self.samples += 1

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

        client = boto3.client(
            "lambda",
            region_name=outputs.get("Region"),
            config=Config(retries={"mode": "standard"}),
        )
    sampler = ProbeSampler(function_name, samples_file, client, interval_s)
    thread = threading.Thread(target=sampler.run, name="probe-sampler", daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        sampler.stop()
        thread.join(30)
