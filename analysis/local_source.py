"""samples.jsonl (local recorder, or the aws probe) -> tidy dataset rows.

The recorder writes what it saw each second under CloudWatch's metric names; this module only
reshapes it, so a number in metrics.csv can be traced to one line of samples.jsonl.

Per-EE rows dominate long runs (a hundred standard EEs x eight values x 3600 s is millions of
rows), so EEs that carry the full contract shape are gathered as flat value blocks and turned
into rows with numpy; anything unusual falls back to row-by-row handling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.dataset import COLUMNS, DATABASE_ARM, HOST_ARM, TIME_FORMAT, RowBuffer, combine
from analysis.runfolder import parse_time
from functions import contract
from input_errors import InputError

# Gauges that the recorder reports as the maximum over the second.
MAX_GAUGES = frozenset({contract.CONCURRENT_EXECUTIONS, contract.EE_CONCURRENCY})
# Counters: the count within the second.
COUNTERS = frozenset(
    {
        contract.INVOCATIONS,
        contract.ERRORS,
        contract.THROTTLES,
        contract.COLD_STARTS,
        "ConcurrencyThrottles",
        "CPUThrottles",
        "MemoryThrottles",
    }
)
# Everything else numeric is a reading at the sample time (ExecutionEnvironments, ...).

# PgBouncer SHOW POOLS columns -> metric names of the contract (`source=pgbouncer:<ee_id>`).
POOL_METRICS = {
    "cl_active": "PoolClientActive",
    "cl_waiting": "PoolClientWaiting",
    "sv_active": "PoolServerActive",
    "sv_idle": "PoolServerIdle",
    "sv_used": "PoolServerUsed",
    "sv_login": "PoolServerLogin",
    "maxwait": "PoolMaxWait",
}
# The recorder's `host` object (local/cpu.py) -> metrics of the `host` pseudo-arm, each the
# average over the second, in % of the whole machine.
HOST_METRICS = {
    "cpu_percent": "HostCpuPercent",
    "stack_cpu_percent": "StackCpuPercent",
    "load_cpu_percent": "LoadGeneratorCpuPercent",
}
EE_CONCURRENCY = contract.EE_CONCURRENCY
# One block = the EE's concurrency, then its pool columns in POOL_METRICS order.
BLOCK_METRICS = [EE_CONCURRENCY, *POOL_METRICS.values()]
MAXWAIT_INDEX = BLOCK_METRICS.index("PoolMaxWait")
_pool_values = itemgetter(*POOL_METRICS)


def _stat_for(metric: str) -> str:
    if metric in MAX_GAUGES:
        return "Maximum"
    if metric in COUNTERS:
        return "Sum"
    return "Sample"


def _time_of(sample: dict[str, Any]) -> str:
    """The sample's second as metrics.csv writes it; `epoch` wins when both are present."""
    epoch = sample.get("epoch")
    if isinstance(epoch, int | float):
        return datetime.fromtimestamp(float(epoch), UTC).strftime(TIME_FORMAT)
    raw = sample.get("time")
    if not isinstance(raw, str):
        raise ValueError("sample has neither epoch nor time")
    if len(raw) == 20 and raw.endswith("Z"):
        return raw
    return parse_time(raw).strftime(TIME_FORMAT)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class _Blocks:
    """Per-EE value blocks of one usual shape, gathered per (sample, arm) group: with a pool
    (the EE's concurrency then its SHOW POOLS columns) or concurrency only (EEs without an
    in-EE pooler, e.g. the proxy arm)."""

    with_pool: bool
    group_times: list[str] = field(default_factory=list)
    group_arms: list[str] = field(default_factory=list)
    group_sizes: list[int] = field(default_factory=list)
    ees: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    @property
    def width(self) -> int:
        """Values (rows) per EE."""
        return len(BLOCK_METRICS) if self.with_pool else 1

    def add_group(self, time: str, arm: str, ees: dict[str, Any]) -> bool:
        """Adds every EE of one arm's sample; False (nothing added) when an EE is not of this
        shape, so the caller can try another."""
        try:
            if self.with_pool:
                values = [
                    x for ee in ees.values() for x in (ee["concurrency"], *_pool_values(ee["pool"]))
                ]
            elif any("pool" in ee for ee in ees.values()):
                return False
            else:
                values = [ee["concurrency"] for ee in ees.values()]
        except (KeyError, TypeError):
            return False
        self.group_times.append(time)
        self.group_arms.append(arm)
        self.group_sizes.append(len(ees))
        self.ees.extend(str(e) for e in ees)
        self.values.extend(values)
        return True

    def to_frame(self) -> pd.DataFrame:
        """Blocks as tidy rows: numpy repeats and tiles, no Python loop per row."""
        width = self.width
        count = len(self.ees)
        lenient = False
        try:
            flat = np.fromiter(self.values, dtype="float64", count=count * width)
        except (TypeError, ValueError):  # a None or a string slipped in: parse leniently
            lenient = True
            flat = pd.to_numeric(pd.Series(self.values, dtype=object), errors="coerce").to_numpy(
                dtype="float64"
            )
        sizes = np.asarray(self.group_sizes, dtype="int64")
        ee_codes, ee_ids = pd.factorize(pd.Series(self.ees, dtype=object))
        time_codes, time_labels = pd.factorize(pd.Series(self.group_times, dtype=object))
        arm_codes, arm_labels = pd.factorize(pd.Series(self.group_arms, dtype=object))
        n_ees = len(ee_ids)
        sources = [f"ee:{e}" for e in ee_ids] + [f"pgbouncer:{e}" for e in ee_ids]
        offset = np.where(np.arange(width) == 0, 0, n_ees)  # concurrency -> ee:, rest pgbouncer:
        source_codes = (ee_codes[:, None] + offset[None, :]).ravel()
        tile = np.tile(np.arange(width), count)
        per_row = sizes * width
        frame = pd.DataFrame(
            {
                "time": pd.Categorical.from_codes(
                    np.repeat(time_codes, per_row), categories=pd.Index(time_labels)
                ),
                "arm": pd.Categorical.from_codes(
                    np.repeat(arm_codes, per_row), categories=pd.Index(arm_labels)
                ),
                "metric": pd.Categorical.from_codes(tile, categories=pd.Index(BLOCK_METRICS)),
                "stat": pd.Categorical.from_codes(
                    np.where(tile == 0, 0, 1), categories=pd.Index(["Maximum", "Sample"])
                ),
                "value": flat,
                "unit": pd.Categorical.from_codes(
                    np.where(tile == MAXWAIT_INDEX, 1, 0), categories=pd.Index(["Count", "Seconds"])
                ),
                "source": pd.Categorical.from_codes(source_codes, categories=pd.Index(sources)),
            },
            columns=list(COLUMNS),
        )
        # Non-numbers are left out, as on the row-by-row path: absent, never 0
        return frame[~np.isnan(flat)] if lenient else frame


def _add_ee(rows: RowBuffer, time: str, arm: str, ee_id: str, ee: dict[str, Any]) -> None:
    """Row-by-row path for an EE entry missing some of the usual fields."""
    concurrency = _number(ee.get("concurrency"))
    if concurrency is not None:
        rows.add(time, arm, EE_CONCURRENCY, "Maximum", concurrency, "Count", f"ee:{ee_id}")
    pool = ee.get("pool")
    if not isinstance(pool, dict):
        return
    for column, metric in POOL_METRICS.items():
        value = _number(pool.get(column))
        if value is not None:
            unit = "Seconds" if column == "maxwait" else "Count"
            rows.add(time, arm, metric, "Sample", value, unit, f"pgbouncer:{ee_id}")


def _add_arm(
    rows: RowBuffer,
    blocks: tuple[_Blocks, _Blocks],
    time: str,
    arm: str,
    values: dict[str, Any],
    source: str,
) -> None:
    for metric, raw in values.items():
        if metric == "ees":
            continue
        number = _number(raw)
        if number is not None:
            rows.add(time, arm, metric, _stat_for(metric), number, "Count", source)
    ees = values.get("ees")
    if not isinstance(ees, dict) or not ees:
        return
    if any(shape.add_group(time, arm, ees) for shape in blocks):
        return
    for ee_id, ee in ees.items():
        if isinstance(ee, dict):
            _add_ee(rows, time, arm, str(ee_id), ee)


def read_samples(path: Path, source: str = "local") -> pd.DataFrame:
    """Parses samples.jsonl into the tidy dataset, in time order.

    A truncated last line (the recorder stopped mid-write) is skipped; a bad line anywhere
    else means the file is not what the contract says and raises InputError.
    """
    rows = RowBuffer()
    blocks = (_Blocks(with_pool=True), _Blocks(with_pool=False))
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            time = _time_of(sample)
        except (json.JSONDecodeError, ValueError) as exc:
            if number == len(lines):
                break
            raise InputError(f"{path} line {number} is not a sample ({exc})") from exc
        arms = sample.get("arms")
        if isinstance(arms, dict):
            for arm, values in arms.items():
                if isinstance(values, dict):
                    _add_arm(rows, blocks, time, str(arm), values, source)
        database = sample.get("database")
        if isinstance(database, dict):
            total = _number(database.get("connections_total"))
            if total is not None:
                rows.add(
                    time,
                    DATABASE_ARM,
                    contract.DATABASE_CONNECTIONS,
                    "Sample",
                    total,
                    "Count",
                    source,
                )
        host = sample.get("host")
        if isinstance(host, dict):
            for key, metric in HOST_METRICS.items():
                value = _number(host.get(key))
                if value is not None:
                    rows.add(time, HOST_ARM, metric, "Average", value, "Percent", source)
    parts = [pd.DataFrame(rows.columns, columns=list(COLUMNS))]
    parts.extend(shape.to_frame() for shape in blocks if shape.ees)
    return combine(parts)
