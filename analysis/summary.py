"""Per-arm numbers of a run, computed once here and shown everywhere (CLI, report, JSON).

The comparison that answers the design question is `db_connections_per_concurrent_request`:
peak DB connections / peak concurrency. Standard Lambda with a pool per EE sits at ~1; a
shared pool (LMI EE, or a proxy) can go far below it, down to the Little's-law floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pandas as pd

from analysis import dataset
from analysis import requests as request_records
from analysis.cloudwatch_source import SOURCE as CLOUDWATCH
from analysis.cloudwatch_source import period_s
from analysis.collect import load_dataset, load_or_collect
from analysis.cost import (
    LOCAL_LABEL,
    ArmLoad,
    arm_cost,
    aurora_cost,
    deployment_of,
    load_prices,
    mean_ms,
    run_prices_file,
)
from analysis.faults import fault_outcome
from analysis.host import host_load, saturation_warning
from analysis.locust_results import LocustArmStats, read_history, read_stats
from analysis.runfolder import LOCUST_HISTORY, LOCUST_STATS, SUMMARY, RunFolder, write_json_atomic
from functions import contract
from input_errors import InputError

# `select now()` through a local pooler takes well under a millisecond; 1 ms is used when the
# manifest gives no measured figure (`scenario.query_ms`), and the summary says so.
ASSUMED_QUERY_SECONDS = 0.001

ARM_LABELS = {a.name: a.label for a in contract.ARM_SPECS}

RESOLUTION_NOTE = (
    "Metric resolution: CloudWatch Lambda and RDS metrics 1 min, Lambda Managed Instances "
    "metrics 5 min, local samples 1 s; peaks at a coarser resolution are maxima over the period."
)


def arm_label(arm: str) -> str:
    """How the report names an arm."""
    return ARM_LABELS.get(arm, arm)


@dataclass(frozen=True)
class ArmSummary:
    """One arm's numbers; None means 'not measured', never 0."""

    arm: str
    label: str
    requests: int
    failures: int
    successes: int
    failure_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    peak_concurrency: float | None
    peak_execution_environments: float | None
    """As the platform counts them (the local recorder; CloudWatch has no such series)."""
    peak_execution_environments_serving: float | None
    """Distinct EEs that served a request in one second, from the responses (both targets)."""
    peak_db_connections: float | None
    db_connections_per_concurrent_request: float | None
    queries_per_s: float | None
    seconds_per_query: float
    seconds_per_query_source: str
    littles_law_floor: float | None
    # one outcome per fault injected (`run --fault`): kind, at_s, failures, recovery_s, reason
    faults: list[dict[str, Any]] = field(default_factory=list)
    throttles: float | None = None
    """Lambda's Throttles over the run (CloudWatch, or the local model's): 429s that the front
    answered 500, as API Gateway does; Locust counts them as failures."""
    throttle_reasons: dict[str, float | None] = field(default_factory=dict)
    """Managed Instances: ConcurrencyThrottles, CPUThrottles, MemoryThrottles (None: missing)."""
    errors: float | None = None
    duration_p50_ms: float | None = None
    """Largest per-minute p50 of Lambda's Duration."""
    duration_p99_ms: float | None = None
    """Largest per-minute p99 of Lambda's Duration."""
    # Exact latency from the per-request records (analysis/requests.py), over successful
    # requests; p50/p95/p99 above come from them too. latency_source says where they came from.
    p90_ms: float | None = None
    p999_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    latency_source: str = "locust buckets"
    cold_starts: int | None = None
    cost: dict[str, Any] = field(default_factory=dict)
    """analysis.cost: usd_per_million_requests, usd_per_hour_at_this_load, assumptions."""
    peak_throttles_per_s: float | None = None
    """Throttles per second at their worst: a local second, or a CloudWatch period's sum over
    its length (an average over the minute on AWS)."""
    peak_ee_concurrency: float | None = None
    """ExecutionEnvironmentConcurrency: the fullest EE's in-flight requests (managed arms)."""
    ee_concurrency_limit: float | None = None
    """ExecutionEnvironmentConcurrencyLimit: the requests one EE may run at once."""


THROTTLE_REASONS = ("ConcurrencyThrottles", "CPUThrottles", "MemoryThrottles")


@dataclass(frozen=True)
class RunSummary:
    """The run's identity, per-arm numbers, the verdict sentence and warnings."""

    run_id: str
    target: str
    status: str
    command: str
    load_seconds: float | None
    arms: list[ArmSummary]
    database_peak_connections: float | None
    verdict: str
    warnings: list[str] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)  # as injected (manifest)
    resolution_note: str = RESOLUTION_NOTE
    failure: str | None = None
    """Why the run failed (the manifest's error), shown above the table."""
    api: dict[str, float | None] = field(default_factory=dict)
    """API Gateway: requests, 4XX and 5XX sums, average and p99 latency (ms)."""
    database_capacity_acu: float | None = None
    """Aurora ServerlessDatabaseCapacity, peak."""
    database_acu_utilization: float | None = None
    """Aurora ACUUtilization (%), peak."""
    probe: dict[str, Any] = field(default_factory=dict)
    """aws: the DB-connection probe's samples, failures and first error."""
    missing_metrics: list[str] = field(default_factory=list)
    """CloudWatch series asked for and not found (or without a datapoint): missing, not 0."""
    # Host CPU over the load (local runs, analysis/host.py); host_saturated marks a run whose
    # local figures measure the machine.
    host_cpu: dict[str, Any] | None = None
    host_saturated: bool | None = None
    database_cost: dict[str, Any] = field(default_factory=dict)
    """analysis.cost: Aurora per hour, apart from the arms (they share it)."""
    runtime: str = "python"
    """The function under test on every arm (manifest; runs from before the knob: python)."""

    def arm(self, name: str) -> ArmSummary:
        """The summary of one arm by name."""
        for item in self.arms:
            if item.arm == name:
                return item
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """summary.json's content: plain JSON, missing numbers as null."""
        return asdict(self)


def total(frame: pd.DataFrame, arm: str, metric: str) -> float | None:
    """Sum of a counter's per-period sums; None when no value was recorded."""
    values = dataset.series(frame, arm, metric, stats=("Sum",))
    return None if values.empty else float(values.sum())


def per_second(frame: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    """A counter as a rate per second over time: local samples count one second each; a
    CloudWatch Sum covers its query's period (60 s, or 300 s for Managed Instances metrics),
    so its rate is the period's average."""
    rows = dataset.arm_level(frame)
    rows = rows[(rows["arm"] == arm) & (rows["metric"] == metric) & (rows["stat"] == "Sum")]
    rows = rows.dropna(subset=["value"])
    if rows.empty:
        return pd.Series(dtype="float64")
    period = (rows["source"].astype(str) == CLOUDWATCH).map({True: period_s(metric), False: 1})
    rates = rows["value"].to_numpy(dtype="float64") / period.to_numpy(dtype="float64")
    return pd.Series(rates, index=pd.DatetimeIndex(rows["time"])).groupby(level=0).max()


def peak_of(frame: pd.DataFrame, arm: str, metric: str, stat: str) -> float | None:
    values = dataset.series(frame, arm, metric, stats=(stat,))
    return None if values.empty else float(values.max())


def missing_metrics(frame: pd.DataFrame) -> list[str]:
    """`arm metric stat` of every CloudWatch series with no value at all."""
    rows = frame[frame["source"] == "cloudwatch"]
    if rows.empty:
        return []
    has_value = (
        rows.assign(ok=rows["value"].notna())
        .groupby(["arm", "metric", "stat"], observed=True)["ok"]
        .any()
    )
    return sorted(
        " ".join(str(part) for part in cast(tuple[str, str, str], key))
        for key, ok in has_value.items()
        if not ok
    )


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _load_seconds(folder: RunFolder) -> float | None:
    try:
        start, end = folder.window()
    except InputError:  # a run without a window still gets a summary, without rates
        return None
    seconds = (end - start) / timedelta(seconds=1)
    return seconds if seconds > 0 else None


def _query_seconds(scenario: dict[str, Any]) -> tuple[float, str]:
    raw = scenario.get("query_ms")
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
        return float(raw) / 1000, "manifest scenario.query_ms"
    return ASSUMED_QUERY_SECONDS, "assumed (no scenario.query_ms in manifest)"


def summarize_arm(
    arm: str,
    locust: LocustArmStats | None,
    frame: pd.DataFrame,
    *,
    load_seconds: float | None,
    queries_per_request: int | None,
    query_seconds: tuple[float, str],
) -> ArmSummary:
    """One arm's numbers from its Locust totals and the dataset."""
    requests = locust.requests if locust else 0
    failures = locust.failures if locust else 0
    successes = requests - failures
    peak_concurrency = dataset.peak(frame, arm, contract.CONCURRENT_EXECUTIONS)
    peak_db = dataset.peak(frame, arm, contract.DATABASE_CONNECTIONS)
    qps = (
        successes * queries_per_request / load_seconds
        if load_seconds and locust and queries_per_request is not None
        else None
    )
    seconds, seconds_source = query_seconds
    return ArmSummary(
        arm=arm,
        label=arm_label(arm),
        requests=requests,
        failures=failures,
        successes=successes,
        failure_rate=_ratio(float(failures), float(requests)),
        p50_ms=locust.p50_ms if locust else None,
        p95_ms=locust.p95_ms if locust else None,
        p99_ms=locust.p99_ms if locust else None,
        peak_concurrency=peak_concurrency,
        peak_execution_environments=dataset.peak(frame, arm, contract.EXECUTION_ENVIRONMENTS),
        peak_execution_environments_serving=dataset.peak(
            frame, arm, "ExecutionEnvironmentsServing"
        ),
        peak_db_connections=peak_db,
        db_connections_per_concurrent_request=_ratio(peak_db, peak_concurrency),
        queries_per_s=qps,
        seconds_per_query=seconds,
        seconds_per_query_source=seconds_source,
        littles_law_floor=None if qps is None else qps * seconds,
        throttles=total(frame, arm, contract.THROTTLES),
        throttle_reasons={
            reason: total(frame, arm, reason)
            for reason in THROTTLE_REASONS
            if _asked(frame, arm, reason)
        },
        errors=total(frame, arm, contract.ERRORS),
        peak_throttles_per_s=_peak(per_second(frame, arm, contract.THROTTLES)),
        peak_ee_concurrency=dataset.peak(frame, arm, contract.EE_CONCURRENCY),
        ee_concurrency_limit=dataset.peak(frame, arm, contract.EE_CONCURRENCY_LIMIT),
        duration_p50_ms=peak_of(frame, arm, contract.DURATION, "p50"),
        duration_p99_ms=peak_of(frame, arm, contract.DURATION, "p99"),
    )


def _peak(values: pd.Series) -> float | None:
    return None if values.empty else float(values.max())


def _asked(frame: pd.DataFrame, arm: str, metric: str) -> bool:
    """Whether the dataset has any row (even a missing value) for the metric."""
    return bool(((frame["arm"] == arm) & (frame["metric"] == metric)).any())


def verdict(arms: list[ArmSummary], probe: dict[str, Any] | None = None) -> str:
    """One sentence from the numbers, e.g. 'Managed Instances used 0.12 DB connections per
    concurrent request; standard Lambda used 1.00.' An arm without a successful request
    gets no verdict: its ratio would say nothing about pooling."""
    measured = [
        a for a in arms if a.db_connections_per_concurrent_request is not None and a.successes > 0
    ]
    if not measured:
        if arms and all(a.successes <= 0 for a in arms):
            return "No arm had a successful request, so none can be compared."
        if all(a.peak_db_connections is None for a in arms):
            return "No arm has DB connection samples, so none can be compared: " + _no_db_why(probe)
        return "No arm has both DB connection and concurrency samples, so none can be compared."
    ordered = sorted(measured, key=lambda a: a.db_connections_per_concurrent_request or 0.0)
    first, rest = ordered[0], ordered[1:]
    sentence = (
        f"{first.label[:1].upper()}{first.label[1:]} used "
        f"{first.db_connections_per_concurrent_request:.2f} DB connections per concurrent request"
    )
    for other in rest:
        sentence += f"; {other.label} used {other.db_connections_per_concurrent_request:.2f}"
    return sentence + "." + _pooler_share(measured)


def _pooler_share(measured: list[ArmSummary]) -> str:
    """What the in-EE pooler itself did: each no-pooler arm against its twin with the pooler
    (direct vs standard, managed-direct vs managed), as sentences after the ranking."""
    by_arm = {a.arm: a for a in measured}
    said = ""
    for bare in measured:
        twin_name = contract.arm(bare.arm).twin if bare.arm in contract.ARMS else None
        twin = by_arm.get(twin_name or "")
        if twin is None:
            continue
        with_pool = twin.db_connections_per_concurrent_request or 0.0
        without = bare.db_connections_per_concurrent_request or 0.0
        cut = 1 - with_pool / without if without > 0 else 0.0
        effect = (
            "the pooler changes nothing there"
            if abs(cut) < 0.05
            else f"the pooler cuts it by {cut:.0%}"
            if cut > 0
            else f"the pooler raises it by {-cut:.0%}"
        )
        said += (
            f" {twin.label[:1].upper()}{twin.label[1:]} used {with_pool:.2f} with its in-EE "
            f"PgBouncer ({twin.arm}) and {without:.2f} without ({bare.arm}): {effect}."
        )
    return said


def _no_db_why(probe: dict[str, Any] | None) -> str:
    """What to check when no DB sample exists: on AWS they come only from the probe."""
    if not probe:
        return "the run recorded none (local: samples.jsonl; aws: the probe function)."
    first = probe.get("first_error")
    return (
        f"the probe {probe.get('function')} returned {probe.get('samples', 0)} samples and "
        f"{probe.get('failures', 0)} failures"
        + (f" (first: {first})" if first else "")
        + "; check its log group in CloudWatch Logs and that it can reach the cluster."
    )


def warnings_for(arms: list[ArmSummary], folder: RunFolder, locust: dict[str, Any]) -> list[str]:
    """What a reader must know before trusting the table."""
    found: list[str] = []
    status = str(folder.manifest.get("status") or "unknown")
    if status != "completed":
        found.append(f"The run's status is '{status}', not 'completed': numbers may be partial.")
    for arm in arms:
        if arm.arm not in locust:
            found.append(f"Locust recorded no requests for arm '{arm.arm}'.")
        if arm.successes <= 0:
            found.append(
                f"Arm '{arm.arm}' had zero successful requests ({arm.failures} failures): "
                "its latency and ratios say nothing about pooling."
            )
        if arm.throttles:
            found.append(
                f"Arm '{arm.arm}' was throttled {arm.throttles:,.0f} times (Lambda's 429, answered"
                " 500 as API Gateway does, so Locust counts them as failures): give it more"
                " capacity (--slots-per-ee, --max-ees, --concurrency-limit) or fewer users."
            )
        if arm.peak_db_connections is None:
            found.append(f"No DatabaseConnections samples for arm '{arm.arm}'.")
        if arm.peak_concurrency is None:
            hint = (
                f": run `poolbench collect {folder.path} --target aws` to read CloudWatch"
                if folder.target == "aws"
                else ""
            )
            found.append(f"No ConcurrentExecutions samples for arm '{arm.arm}'{hint}.")
    return found


def exact_latency(
    arms: list[ArmSummary], folder: RunFolder, locust: dict[str, LocustArmStats]
) -> tuple[list[ArmSummary], list[str]]:
    """Every arm's percentiles from the run's per-request records instead of Locust's
    rounded buckets; a warning when there are none, or when they miss a request Locust saw."""
    records = request_records.load_records(folder)
    if records is None:
        return arms, [
            "No per-request records (requests/): latency percentiles are Locust's, rounded to "
            "100 ms above 1 s; re-run with this poolbench for exact ones."
        ]
    found: list[str] = []
    exact = []
    for arm in arms:
        stats = request_records.latency_stats(records, arm.arm)
        counted = locust[arm.arm].requests if arm.arm in locust else 0
        if stats.requests != counted:
            found.append(
                f"Arm '{arm.arm}' has {stats.requests} request records but Locust counted "
                f"{counted}: its percentiles miss requests."
            )
        exact.append(
            replace(
                arm,
                p50_ms=stats.p50_ms,
                p90_ms=stats.p90_ms,
                p95_ms=stats.p95_ms,
                p99_ms=stats.p99_ms,
                p999_ms=stats.p999_ms,
                min_ms=stats.min_ms,
                max_ms=stats.max_ms,
                mean_ms=stats.mean_ms,
                latency_source="requests (exact, successful requests)",
                cold_starts=stats.cold_starts,
            )
        )
    return exact, found


def summarize(
    run_dir: Path, *, frame: pd.DataFrame | None = None, write: bool = True
) -> RunSummary:
    """The run's summary; writes summary.json (atomically) unless `write=False`.

    Reads locust_stats.csv and the dataset (metrics.csv, or samples.jsonl when not collected
    yet, in which case metrics.csv is written too unless `write=False`, which writes
    nothing); raises InputError naming the file when the run folder lacks one.
    """
    folder = RunFolder.open(run_dir)
    stats_path = folder.require(LOCUST_STATS, "Locust writes it during `poolbench run`")
    locust = read_stats(stats_path)
    if frame is not None:
        data = frame
    else:
        data = load_or_collect(folder) if write else load_dataset(folder)[0]
    scenario = dict(folder.manifest.get("scenario") or {})
    arm_names = folder.arms or sorted(locust)
    load_seconds = _load_seconds(folder)
    raw_queries = scenario.get("queries")
    queries = int(raw_queries) if isinstance(raw_queries, int | float) else None
    query_seconds = _query_seconds(scenario)
    probe = dict(folder.manifest.get("probe") or {})
    status = str(folder.manifest.get("status") or "unknown")
    failure = str(folder.manifest.get("error")) if status == "failed" else None
    arms = [
        summarize_arm(
            a,
            locust.get(a),
            data,
            load_seconds=load_seconds,
            queries_per_request=queries,
            query_seconds=query_seconds,
        )
        for a in arm_names
    ]
    arms, latency_warnings = exact_latency(arms, folder, locust)
    try:
        host = host_load(data, folder.window())
    except InputError:
        host = host_load(data)
    faults = [dict(f) for f in folder.manifest.get("faults") or []]
    history_path = folder.file(LOCUST_HISTORY)
    if faults and history_path.is_file():
        history = read_history(history_path)
        arms = [
            replace(
                arm,
                faults=[
                    fault_outcome(history, arm.arm, f, nxt.get("at") if nxt else None)
                    for f, nxt in zip(faults, [*faults[1:], None], strict=True)
                ],
            )
            for arm in arms
        ]
    summary = RunSummary(
        run_id=str(folder.manifest.get("run_id") or folder.path.name),
        target=folder.target,
        runtime=str(folder.manifest.get("runtime") or "python"),
        status=str(folder.manifest.get("status") or "unknown"),
        command=str(folder.manifest.get("command") or ""),
        load_seconds=load_seconds,
        arms=arms,
        database_peak_connections=dataset.peak(
            data, dataset.DATABASE_ARM, contract.DATABASE_CONNECTIONS
        ),
        verdict=verdict(arms, probe),
        warnings=warnings_for(arms, folder, locust) + latency_warnings + saturation_warning(host),
        failure=failure,
        api={
            "requests": total(data, dataset.API_ARM, "Count"),
            "4xx": total(data, dataset.API_ARM, "4XXError"),
            "5xx": total(data, dataset.API_ARM, "5XXError"),
            "latency_avg_ms": peak_of(data, dataset.API_ARM, "Latency", "Average"),
            "latency_p99_ms": peak_of(data, dataset.API_ARM, "Latency", "p99"),
        }
        if _asked(data, dataset.API_ARM, "Count")
        else {},
        database_capacity_acu=peak_of(
            data, dataset.DATABASE_ARM, "ServerlessDatabaseCapacity", "Maximum"
        ),
        database_acu_utilization=peak_of(data, dataset.DATABASE_ARM, "ACUUtilization", "Maximum"),
        probe=probe or {},
        missing_metrics=missing_metrics(data),
        faults=faults,
        host_cpu=None if host is None else asdict(host),
        host_saturated=None if host is None else host.saturated,
    )
    summary = _priced(summary, folder.path, folder.manifest, mean_ms(locust))
    if write:
        write_json_atomic(folder.file(SUMMARY), summary.to_json())
    return summary


def _priced(
    summary: RunSummary, run_dir: Path, manifest: dict[str, Any], mean_ms: dict[str, float | None]
) -> RunSummary:
    """The summary with `cost` on every arm and `database_cost` (Aurora, apart). Here, not in
    analysis/cost.py, so that the cost model never imports the summary that uses it."""
    dep = deployment_of(manifest, summary.database_capacity_acu)
    prices = load_prices(dep.region, run_prices_file(run_dir))
    label = [LOCAL_LABEL] if summary.target == "local" else []
    arms = []
    for arm in summary.arms:
        ees = arm.peak_execution_environments or arm.peak_execution_environments_serving
        load = ArmLoad(
            arm.arm, arm.requests, summary.load_seconds or 0.0, mean_ms.get(arm.arm), ees
        )
        cost = arm_cost(load, dep, prices)
        arms.append(
            replace(arm, cost=replace(cost, assumptions=label + cost.assumptions).to_json())
        )
    aurora = aurora_cost(dep, prices)
    return replace(
        summary,
        arms=arms,
        database_cost=replace(aurora, assumptions=label + aurora.assumptions).to_json(),
    )
