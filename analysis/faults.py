"""What each arm went through when a fault was injected: failures, and time to recover.

Read from Locust's per-second history (cumulative counts per arm), so it is the clients' view:
- failures: requests that failed from the fault until recovery;
- recovery_s: seconds from the fault to the first second from which the arm has no failure for
  RECOVERED_FOR_S seconds and its successes per second (a RECOVERED_FOR_S-second mean) are back
  to RECOVERED_SHARE of their mean in the PRE_FAULT_S seconds before the fault;
- recovery_s is None, with the reason, when that never happened within the run.
A closed loop of long requests completes in bursts, hence means over windows, not seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

PRE_FAULT_S = 10
RECOVERED_FOR_S = 5
RECOVERED_SHARE = 0.8


def per_second(history: pd.DataFrame, arm: str) -> pd.DataFrame:
    """Successes and failures completed in each second, from the cumulative history."""
    rows = history[history["arm"] == arm].sort_values("time")
    if rows.empty:
        return pd.DataFrame(columns=["successes", "failures"])
    seconds = rows.set_index(rows["time"].dt.floor("s"))[["total_requests", "total_failures"]]
    seconds = seconds.groupby(level=0).max()
    full = pd.date_range(seconds.index.min(), seconds.index.max(), freq="s")
    seconds = seconds.reindex(full).ffill().fillna(0)
    done = seconds.diff().fillna(seconds.iloc[[0]]).clip(lower=0)
    return pd.DataFrame(
        {
            "successes": done["total_requests"] - done["total_failures"],
            "failures": done["total_failures"],
        }
    )


def fault_outcome(
    history: pd.DataFrame, arm: str, fault: dict[str, Any], until: str | None = None
) -> dict[str, Any]:
    """One arm's outcome of one injected fault (manifest `faults` entry: kind, at_s, at),
    looked at until the next fault (`until`, its `at`), so no failure counts twice."""
    outcome: dict[str, Any] = {
        "kind": fault.get("kind"),
        "at_s": fault.get("at_s"),
        "failures": None,
        "recovery_s": None,
        "reason": None,
    }
    at_raw = fault.get("at")
    if not isinstance(at_raw, str):
        outcome["reason"] = "the fault's time was not recorded"
        return outcome
    at = pd.Timestamp(datetime.fromisoformat(at_raw)).floor("s")
    counts = per_second(history, arm)
    if counts.empty:
        outcome["reason"] = "no requests recorded for this arm"
        return outcome
    before = counts[(counts.index >= at - pd.Timedelta(seconds=PRE_FAULT_S)) & (counts.index < at)]
    level = float(before["successes"].mean()) if not before.empty else 0.0
    after = counts[counts.index >= at]
    if until is not None:
        after = after[after.index < pd.Timestamp(datetime.fromisoformat(until)).floor("s")]
    rolling_failures = after["failures"][::-1].rolling(RECOVERED_FOR_S, min_periods=1).sum()[::-1]
    rolling_successes = after["successes"][::-1].rolling(RECOVERED_FOR_S).mean()[::-1]
    recovered = after[(rolling_failures == 0) & (rolling_successes >= RECOVERED_SHARE * level)]
    if recovered.empty:
        outcome["failures"] = int(after["failures"].sum())
        outcome["reason"] = (
            "did not recover before the next fault" if until else "did not recover within the run"
        )
        return outcome
    back = recovered.index[0]
    outcome["failures"] = int(after.loc[after.index < back, "failures"].sum())
    outcome["recovery_s"] = float((back - at) / pd.Timedelta(seconds=1))
    return outcome
