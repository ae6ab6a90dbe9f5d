"""CloudWatch (boto3 GetMetricData) -> tidy dataset rows for an aws run.

All queries of a run go in as few GetMetricData calls as the API allows (500 queries a call,
NextToken followed), because CloudWatch bills and throttles per call. The client is injected;
`make_client` builds the default one with botocore's standard retry mode, and boto3 itself
resolves AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from analysis.dataset import API_ARM, DATABASE_ARM, RowBuffer
from analysis.runfolder import format_time
from poolbench.errors import InputError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef

MAX_QUERIES_PER_CALL = 500  # GetMetricData's limit
SOURCE = "cloudwatch"
LMI_VERSION = "$LATEST.PUBLISHED"  # what unqualified invokes (API Gateway) reach on LMI
# How long after a period ends CloudWatch usually has it: 1-minute Lambda/RDS metrics arrive
# within about two minutes; LMI metrics are published every 5 minutes.
PUBLICATION_LAG = {60: timedelta(minutes=2), 300: timedelta(minutes=5)}
EXTRA_POLL_LIMIT = timedelta(minutes=5)
POLL_INTERVAL_S = 30.0


@dataclass(frozen=True)
class MetricQuery:
    """One series to fetch and the dataset labels its values get."""

    arm: str
    namespace: str
    metric: str
    stat: str
    period: int
    dimensions: tuple[tuple[str, str], ...]
    unit: str

    def to_api(self, query_id: str) -> MetricDataQueryTypeDef:
        """The GetMetricData query; the label is ours so results can be traced back."""
        return {
            "Id": query_id,
            "Label": f"{self.arm} {self.metric} {self.stat}",
            "MetricStat": {
                "Metric": {
                    "Namespace": self.namespace,
                    "MetricName": self.metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
                },
                "Period": self.period,
                "Stat": self.stat,
            },
            "ReturnData": True,
        }


@dataclass(frozen=True)
class CloudWatchSettings:
    """What to query, read from the run's outputs.json (the `cdk deploy` outputs shape)."""

    arms: tuple[str, ...]
    function_names: Mapping[str, str]
    capacity_provider: str | None = None
    db_cluster: str | None = None
    api_name: str | None = None
    api_stage: str | None = None
    region: str | None = None
    managed_arms: tuple[str, ...] = ("managed",)

    @classmethod
    def from_outputs(
        cls, outputs: Mapping[str, str], arms: Sequence[str] = ()
    ) -> CloudWatchSettings:
        """Arms from the run's scenario (else the outputs' `Arms`); `<Arm>FunctionName` each."""
        chosen = tuple(arms) or tuple(
            a.strip() for a in outputs.get("Arms", "").split(",") if a.strip()
        )
        if not chosen:
            raise InputError("outputs.json names no arms (key `Arms`)")
        names: dict[str, str] = {}
        for arm in chosen:
            key = f"{arm[:1].upper()}{arm[1:]}FunctionName"
            if not outputs.get(key):
                raise InputError(f"outputs.json has no {key}: the aws target needs it for {arm}")
            names[arm] = outputs[key]
        return cls(
            arms=chosen,
            function_names=names,
            capacity_provider=outputs.get("CapacityProviderName") or None,
            db_cluster=outputs.get("DbClusterIdentifier") or None,
            api_name=outputs.get("ApiName") or None,
            api_stage=outputs.get("ApiStage") or None,
            region=outputs.get("Region") or None,
        )


def make_client(settings: CloudWatchSettings) -> CloudWatchClient:
    """The default client: standard retries; AWS_REGION (if set) beats the stack's Region,
    and boto3 applies AWS_PROFILE and AWS_ENDPOINT_URL on its own."""
    import boto3
    from botocore.config import Config

    env_region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    session = boto3.session.Session(region_name=env_region or settings.region)
    config = Config(retries={"mode": "standard", "total_max_attempts": 10})
    return session.client("cloudwatch", config=config)


def _function_queries(arm: str, function: str) -> Iterator[MetricQuery]:
    dims = (("FunctionName", function),)
    for metric, stat, unit in (
        ("ConcurrentExecutions", "Maximum", "Count"),
        ("Invocations", "Sum", "Count"),
        ("Errors", "Sum", "Count"),
        ("Throttles", "Sum", "Count"),
        ("Duration", "p50", "Milliseconds"),
        ("Duration", "p99", "Milliseconds"),
    ):
        yield MetricQuery(arm, "AWS/Lambda", metric, stat, 60, dims, unit)


def _managed_queries(arm: str, function: str, capacity_provider: str) -> Iterator[MetricQuery]:
    dims = (
        ("CapacityProviderName", capacity_provider),
        ("FunctionName", function),
        ("Resource", f"{function}:{LMI_VERSION}"),
    )
    for metric, stat, unit in (
        ("ExecutionEnvironmentConcurrency", "Maximum", "Count"),
        ("ExecutionEnvironmentConcurrency", "SampleCount", "Count"),
        ("ExecutionEnvironmentConcurrencyLimit", "Maximum", "Count"),
        ("ConcurrencyThrottles", "Sum", "Count"),
        ("CPUThrottles", "Sum", "Count"),
        ("MemoryThrottles", "Sum", "Count"),
        ("ExecutionEnvironmentCPUUtilization", "Maximum", "Percent"),
    ):
        yield MetricQuery(arm, "AWS/Lambda", metric, stat, 300, dims, unit)


def build_queries(settings: CloudWatchSettings) -> list[MetricQuery]:
    """The metric list of issue 5, with FACTS.md's dimensions and periods."""
    queries: list[MetricQuery] = []
    for arm in settings.arms:
        function = settings.function_names[arm]
        queries.extend(_function_queries(arm, function))
        if arm in settings.managed_arms and settings.capacity_provider:
            queries.extend(_managed_queries(arm, function, settings.capacity_provider))
    if settings.db_cluster:
        dims = (("DBClusterIdentifier", settings.db_cluster), ("Role", "WRITER"))
        queries.append(
            MetricQuery(
                DATABASE_ARM, "AWS/RDS", "DatabaseConnections", "Maximum", 60, dims, "Count"
            )
        )
        queries.append(
            MetricQuery(
                DATABASE_ARM, "AWS/RDS", "ServerlessDatabaseCapacity", "Maximum", 60, dims, "ACU"
            )
        )
    if settings.api_name and settings.api_stage:
        dims = (("ApiName", settings.api_name), ("Stage", settings.api_stage))
        for metric, stat, unit in (
            ("Count", "Sum", "Count"),
            ("4XXError", "Sum", "Count"),
            ("5XXError", "Sum", "Count"),
            ("Latency", "Average", "Milliseconds"),
            ("Latency", "p99", "Milliseconds"),
        ):
            queries.append(MetricQuery(API_ARM, "AWS/ApiGateway", metric, stat, 60, dims, unit))
    return queries


def query_window(
    start: datetime, end: datetime, queries: Sequence[MetricQuery]
) -> tuple[datetime, datetime]:
    """Start floored and end ceiled to the longest period, so every period is whole and the
    one holding the end of the load is included."""
    longest = max((q.period for q in queries), default=60)
    start_s = math.floor(start.timestamp() / longest) * longest
    end_s = math.ceil(end.timestamp() / longest) * longest
    if end_s <= start_s:
        end_s = start_s + longest
    return datetime.fromtimestamp(start_s, UTC), datetime.fromtimestamp(end_s, UTC)


def ready_at(end: datetime, queries: Sequence[MetricQuery]) -> datetime:
    """When the last period of every query should have been published."""
    latest = end
    for period in {q.period for q in queries}:
        period_end = math.ceil(end.timestamp() / period) * period
        lag = PUBLICATION_LAG.get(period, timedelta(seconds=period))
        latest = max(latest, datetime.fromtimestamp(period_end, UTC) + lag)
    return latest


@dataclass
class FetchResult:
    """Datapoints per query index, and how many GetMetricData calls it took."""

    points: dict[int, list[tuple[datetime, float]]] = field(default_factory=dict)
    calls: int = 0


def fetch(
    client: CloudWatchClient, queries: Sequence[MetricQuery], start: datetime, end: datetime
) -> FetchResult:
    """All queries in batches of 500, each batch's NextToken pages followed to the end."""
    result = FetchResult(points={i: [] for i in range(len(queries))})
    for offset in range(0, len(queries), MAX_QUERIES_PER_CALL):
        batch = queries[offset : offset + MAX_QUERIES_PER_CALL]
        api_queries = [q.to_api(f"q{offset + i}") for i, q in enumerate(batch)]
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "MetricDataQueries": api_queries,
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampAscending",
            }
            if token:
                kwargs["NextToken"] = token
            response = client.get_metric_data(**kwargs)
            result.calls += 1
            for item in response.get("MetricDataResults", []):
                index = int(item.get("Id", "q-1")[1:])
                stamps = item.get("Timestamps", [])
                values = item.get("Values", [])
                result.points.setdefault(index, []).extend(zip(stamps, values, strict=True))
            token = response.get("NextToken")
            if not token:
                break
    return result


def to_frame(queries: Sequence[MetricQuery], result: FetchResult, start: datetime) -> pd.DataFrame:
    """Datapoints as dataset rows; a series with no datapoint is one row with an empty value
    at the window start, so 'CloudWatch had nothing' is visible and never read as 0."""
    rows = RowBuffer()
    for index, query in enumerate(queries):
        points = sorted(result.points.get(index, []))
        if not points:
            rows.add(
                format_time(start), query.arm, query.metric, query.stat, None, query.unit, SOURCE
            )
        for stamp, value in points:
            rows.add(
                format_time(stamp), query.arm, query.metric, query.stat, value, query.unit, SOURCE
            )
    return rows.to_frame()


def _sentinels_complete(queries: Sequence[MetricQuery], result: FetchResult, end: datetime) -> bool:
    """True once every function's Invocations has a datapoint in the period holding `end`."""
    for index, query in enumerate(queries):
        if query.metric != "Invocations":
            continue
        last_start = math.floor((end.timestamp() - 1) / query.period) * query.period
        if not any(stamp.timestamp() >= last_start for stamp, _ in result.points.get(index, [])):
            return False
    return True


@dataclass(frozen=True)
class Clock:
    """Time and sleep, injectable so waiting can be tested without waiting."""

    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = field(default=time.sleep)


def wait_until(moment: datetime, clock: Clock, console: Console | None, label: str) -> None:
    """Sleeps until `moment` with a rich progress bar (on stderr) counting down."""
    remaining = (moment - clock.now()).total_seconds()
    if remaining <= 0:
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=remaining)
        while (left := (moment - clock.now()).total_seconds()) > 0:
            bar.update(task, completed=remaining - left)
            clock.sleep(min(1.0, left))
        bar.update(task, completed=remaining)


def collect_cloudwatch(
    settings: CloudWatchSettings,
    start: datetime,
    end: datetime,
    *,
    client: CloudWatchClient | None = None,
    wait: bool = True,
    clock: Clock | None = None,
    console: Console | None = None,
) -> tuple[pd.DataFrame, int]:
    """The run window's metrics as a dataset, and the number of GetMetricData calls made.

    With `wait`, first waits until CloudWatch should have published the last period, then
    polls (every 30 s, at most 5 minutes more) while a function's Invocations still lacks it.
    """
    clock = clock or Clock()
    queries = build_queries(settings)
    window_start, window_end = query_window(start, end, queries)
    cw = client or make_client(settings)
    if wait:
        wait_until(ready_at(end, queries), clock, console, "waiting for CloudWatch to publish")
    result = fetch(cw, queries, window_start, window_end)
    give_up = clock.now() + EXTRA_POLL_LIMIT
    while wait and not _sentinels_complete(queries, result, end) and clock.now() < give_up:
        clock.sleep(POLL_INTERVAL_S)
        retry = fetch(cw, queries, window_start, window_end)
        retry.calls += result.calls
        result = retry
    return to_frame(queries, result, window_start), result.calls
