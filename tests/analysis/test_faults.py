"""The fault outcome, against hand-computed examples of Locust's per-second history."""

from __future__ import annotations

import pandas as pd

from analysis.faults import fault_outcome

START = pd.Timestamp("2026-12-01T10:00:00Z")


def history(per_second: list[tuple[int, int]], arm: str = "managed") -> pd.DataFrame:
    """Cumulative rows as Locust writes them, from (successes, failures) per second."""
    rows, total, failed = [], 0, 0
    for second, (ok, bad) in enumerate(per_second):
        total += ok + bad
        failed += bad
        rows.append(
            {
                "arm": arm,
                "time": START + pd.Timedelta(seconds=second),
                "total_requests": total,
                "total_failures": failed,
            }
        )
    return pd.DataFrame(rows)


def fault_at(second: int) -> dict[str, object]:
    at = (START + pd.Timedelta(seconds=second)).isoformat()
    return {"kind": "db-restart", "at_s": float(second), "at": at}


def test_failures_until_recovery_and_the_seconds_it_took() -> None:
    # 10 s at 10/s, the fault at 10 s: 3 s of failures (4, 6, 2), then 10/s again
    seconds = [(10, 0)] * 10 + [(6, 4), (4, 6), (8, 2)] + [(10, 0)] * 8

    outcome = fault_outcome(history(seconds), "managed", fault_at(10))

    assert outcome["failures"] == 12
    assert outcome["recovery_s"] == 3.0
    assert outcome["reason"] is None


def test_failures_stop_but_throughput_stays_low_is_not_recovered() -> None:
    # no failure after the fault, but successes at 5/s against 10/s before (below 80 %)
    seconds = [(10, 0)] * 10 + [(0, 3)] + [(5, 0)] * 10

    outcome = fault_outcome(history(seconds), "managed", fault_at(10))

    assert outcome["recovery_s"] is None
    assert outcome["failures"] == 3
    assert outcome["reason"] == "did not recover within the run"


def test_an_arm_the_fault_did_not_touch_recovers_at_once() -> None:
    seconds = [(10, 0)] * 20

    outcome = fault_outcome(history(seconds), "managed", fault_at(10))

    assert outcome == {
        "kind": "db-restart",
        "at_s": 10.0,
        "failures": 0,
        "recovery_s": 0.0,
        "reason": None,
    }


def test_a_fault_is_looked_at_only_until_the_next_one() -> None:
    # failures go on past the second fault: they count for the second, not both
    seconds = [(10, 0)] * 10 + [(5, 5)] * 10 + [(10, 0)] * 10
    first, second = fault_at(10), fault_at(15)

    one = fault_outcome(history(seconds), "managed", first, until=str(second["at"]))
    two = fault_outcome(history(seconds), "managed", second)

    assert one["failures"] == 25
    assert one["recovery_s"] is None
    assert one["reason"] == "did not recover before the next fault"
    assert two["failures"] == 25
    assert two["recovery_s"] == 5.0
