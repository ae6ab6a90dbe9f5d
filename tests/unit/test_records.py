"""loadtest/records.py: the row a request leaves, and that rows reach the disk while the
process still runs (a killed Locust loses at most its last second)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from loadtest import records
from loadtest.records import COLUMNS, RecordWriter


def test_a_row_holds_the_handlers_timings(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path, "local")
    body = {"arm": "standard", "ee": "standard-7", "worker": 42, "cold_start": True,
            "init_age_ms": 3.5, "connect_ms": 1.25, "query_ms": [0.5, 0.75], "slept_ms": 5000.1,
            "total_ms": 5003.0}  # fmt: skip
    writer.write(start=1.5, arm="standard", latency_ms=5012.34567, ok=True, status=200,
                 body=json.dumps(body).encode(), error=None)  # fmt: skip
    writer.write(start=2.0, arm="standard", latency_ms=3.0, ok=False, status=None,
                 body=b"", error=ConnectionError("refused, badly\nreally"))  # fmt: skip
    writer.close()
    with writer.path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(COLUMNS)
    assert rows[0] == {
        "start": "1.500000", "arm": "standard", "latency_ms": "5012.3457", "ok": "1",
        "status": "200", "ee": "standard-7", "worker": "42", "cold": "1", "init_age_ms": "3.500",
        "connect_ms": "1.250", "query_ms": "1.250", "queries": "2", "sleep_ms": "5000.100",
        "handler_ms": "5003.000", "process": "local", "error": "",
    }  # fmt: skip
    assert rows[1]["ok"] == "0" and rows[1]["status"] == "" and rows[1]["ee"] == ""
    assert rows[1]["error"] == "refused; badly really"


def test_rows_reach_the_disk_within_a_second(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path, "worker")
    writer.write(start=1.0, arm="managed", latency_ms=1.0, ok=True, status=200, body=None,
                 error=None)  # fmt: skip
    time.sleep(records.FLUSH_EVERY_S + 0.05)
    writer.write(start=2.0, arm="managed", latency_ms=1.0, ok=True, status=200, body=None,
                 error=None)  # fmt: skip
    # not closed: what a killed process would leave behind
    assert len(writer.path.read_text().splitlines()) == 3
    writer.close()
