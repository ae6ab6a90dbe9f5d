"""One row per request, from every Locust process, into the run folder: the exact latencies.

Locust rounds each response time into a bucket before it counts it (to 100 ms above 1 s, to
1 s above 10 s), so its percentiles can sit below the minimum and hide every difference under
100 ms. These rows keep Locust's own float latency (perf_counter around the request), and what
the handler said about the request, so every percentile is computed from the requests
themselves (analysis/requests.py).

Format: CSV, one file per Locust process (`requests/<role>-<pid>.csv`), appended with a
1 MiB write buffer, flushed at least once a second (a killed process loses at most its last
second) and when the process quits.

- One file per process: workers (`--processes N`) write their own rows with no lock and no
  message to the master; readers concatenate the files.
- CSV: a row costs a few microseconds to write from the load generator (which must not be
  slowed), about 150 bytes, and pandas' C parser reads a million rows in about a second.
  Parquet would need pyarrow, a heavy dependency poolbench does not have, and cannot be
  appended row by row; JSONL would be twice the size and slower to read back.

Kept free of Locust so it can be tested without gevent's monkey-patching.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

REQUESTS_DIR = "requests"
"""The run folder's sub-folder holding the per-process record files."""

COLUMNS = (
    "start",
    "arm",
    "latency_ms",
    "ok",
    "status",
    "ee",
    "worker",
    "cold",
    "init_age_ms",
    "connect_ms",
    "query_ms",
    "queries",
    "sleep_ms",
    "handler_ms",
    "process",
    "error",
)
"""The record file's columns (docs/contracts.md describes each)."""

BUFFER_BYTES = 1 << 20
FLUSH_EVERY_S = 1.0


def _ms(value: Any) -> str:
    """A handler timing as written: empty when the handler did not report it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return ""
    return f"{float(value):.3f}"


def _text(value: Any) -> str:
    """A free-text cell: no separator, quote or newline can break the row."""
    if value is None:
        return ""
    return str(value).replace(",", ";").replace('"', "'").replace("\n", " ").replace("\r", " ")


def handler_fields(body: bytes | str | None) -> list[str]:
    """ee, worker, cold, init_age_ms, connect_ms, query_ms, queries, sleep_ms, handler_ms
    from the handler's JSON body (functions/app/handler.py); empty cells when it is not one."""
    data: Any = None
    if body:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            data = json.loads(body)
    if not isinstance(data, Mapping):
        return [""] * 9
    queries = data.get("query_ms")
    times = [q for q in queries if isinstance(q, int | float)] if isinstance(queries, list) else []
    cold = data.get("cold_start")
    return [
        _text(data.get("ee")),
        _text(data.get("worker")),
        "" if not isinstance(cold, bool) else ("1" if cold else "0"),
        _ms(data.get("init_age_ms")),
        _ms(data.get("connect_ms")),
        _ms(sum(times)) if isinstance(queries, list) else "",
        str(len(times)) if isinstance(queries, list) else "",
        _ms(data.get("slept_ms")),
        _ms(data.get("total_ms")),
    ]


class RecordWriter:
    """Appends one CSV row per finished request to this process's record file."""

    def __init__(self, directory: Path, process: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.process = process
        self.path = directory / f"{process}-{os.getpid()}.csv"
        self._file: IO[str] | None = self.path.open(
            "a", encoding="utf-8", newline="", buffering=BUFFER_BYTES
        )
        if self.path.stat().st_size == 0:
            self._file.write(",".join(COLUMNS) + "\n")
        self.rows = 0
        self._flushed_at = time.monotonic()

    def write(
        self,
        *,
        start: float,
        arm: str,
        latency_ms: float,
        ok: bool,
        status: int | None,
        body: bytes | str | None,
        error: object | None,
    ) -> None:
        """One request: Locust's start (epoch s) and latency, its verdict, the handler's body."""
        if self._file is None:
            return
        cells = [
            f"{start:.6f}",
            _text(arm),
            f"{latency_ms:.4f}",
            "1" if ok else "0",
            "" if status is None else str(status),
            *handler_fields(body),
            self.process,
            "" if ok or error is None else _text(error)[:200],
        ]
        self._file.write(",".join(cells) + "\n")
        self.rows += 1
        if (now := time.monotonic()) - self._flushed_at >= FLUSH_EVERY_S:
            self._file.flush()
            self._flushed_at = now

    def flush(self) -> None:
        """Everything written so far on disk (the end of a test, or of the process)."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and close; later writes are dropped (the process is ending)."""
        if self._file is not None:
            self._file.close()
            self._file = None
