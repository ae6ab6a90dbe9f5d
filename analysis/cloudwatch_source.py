"""CloudWatch (boto3 GetMetricData) -> tidy dataset rows for an aws run.

All queries of a run go in as few GetMetricData calls as the API allows (500 queries a call,
NextToken followed), because CloudWatch bills and throttles per call. The client is injected;
`make_client` builds the default one with botocore's standard retry mode, and boto3 itself
resolves AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console

from analysis.dataset import API_ARM, DATABASE_ARM, RowBuffer
from analysis.runfolder import format_time
from functions import contract
from input_errors import InputError

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
# The first look, a minute after the load: a 1-minute period can be in by then.
FIRST_POLL_DELAY = timedelta(minutes=1)


FUNCTION_PERIOD_S = 60  # Lambda's function metrics, RDS, API Gateway
MANAGED_PERIOD_S = 300  # Lambda Managed Instances publish every 5 minutes
MANAGED_METRICS = (
    (contract.EE_CONCURRENCY, "Maximum", "Count"),
    (contract.EE_CONCURRENCY, "SampleCount", "Count"),
    (contract.EE_CONCURRENCY_LIMIT, "Maximum", "Count"),
    ("ConcurrencyThrottles", "Sum", "Count"),
    ("CPUThrottles", "Sum", "Count"),
    ("MemoryThrottles", "Sum", "Count"),
    ("ExecutionEnvironmentCPUUtilization", "Maximum", "Percent"),
)


def period_s(metric: str) -> int:
    """The period a metric of this name is fetched at: a CloudWatch Sum over it divided by
    this is a rate per second."""
    return (
        MANAGED_PERIOD_S if any(metric == m for m, _, _ in MANAGED_METRICS) else FUNCTION_PERIOD_S
    )


Dimensions = tuple[tuple[str, str], ...]
SeriesId = tuple[str, str, Dimensions]


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
    match: tuple[tuple[str, str], ...] = ()
    """Dimensions a discovered series must have to stand for this query (default: all of
    `dimensions`); the series found by ListMetrics supplies the rest."""
    sentinel: bool = False
    """The wait is over once every found sentinel has a datapoint in its last period."""

    @property
    def required(self) -> tuple[tuple[str, str], ...]:
        return self.match or self.dimensions

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
    managed_arms: tuple[str, ...] = tuple(a.name for a in contract.ARM_SPECS if a.managed)

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
            key = contract.function_name_output(arm)
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
    """The default client: the stack's Region (the outputs' `Region`) beats the shell's, so
    CloudWatch is asked where the stack is; standard retries; boto3 applies AWS_PROFILE and
    AWS_ENDPOINT_URL on its own."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=settings.region)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 4}, connect_timeout=5, read_timeout=30
    )
    return session.client("cloudwatch", config=config)


def _function_queries(arm: str, function: str) -> Iterator[MetricQuery]:
    dims = (("FunctionName", function),)
    for metric, stat, unit in (
        (contract.CONCURRENT_EXECUTIONS, "Maximum", "Count"),
        (contract.INVOCATIONS, "Sum", "Count"),
        (contract.ERRORS, "Sum", "Count"),
        (contract.THROTTLES, "Sum", "Count"),
        (contract.DURATION, "p50", "Milliseconds"),
        (contract.DURATION, "p99", "Milliseconds"),
    ):
        sentinel = metric == contract.INVOCATIONS
        yield MetricQuery(
            arm, "AWS/Lambda", metric, stat, FUNCTION_PERIOD_S, dims, unit, sentinel=sentinel
        )


def _managed_queries(arm: str, function: str, capacity_provider: str) -> Iterator[MetricQuery]:
    dims = (
        ("CapacityProviderName", capacity_provider),
        ("FunctionName", function),
        ("Resource", f"{function}:{LMI_VERSION}"),
    )
    for metric, stat, unit in MANAGED_METRICS:
        # Which extra dimensions (Resource `<fn>:$LATEST.PUBLISHED`?) LMI metrics carry is not
        # documented with certainty: the function's name must match, ListMetrics says the rest.
        sentinel = (metric, stat) == (contract.EE_CONCURRENCY, "Maximum")
        yield MetricQuery(
            arm,
            "AWS/Lambda",
            metric,
            stat,
            MANAGED_PERIOD_S,
            dims,
            unit,
            match=dims[1:2],
            sentinel=sentinel,
        )


def build_queries(settings: CloudWatchSettings) -> list[MetricQuery]:
    """The metric list of issue 5, with FACTS.md's dimensions and periods."""
    queries: list[MetricQuery] = []
    for arm in settings.arms:
        function = settings.function_names[arm]
        queries.extend(_function_queries(arm, function))
        if arm in settings.managed_arms and settings.capacity_provider:
            queries.extend(_managed_queries(arm, function, settings.capacity_provider))
    if settings.db_cluster:
        # Per cluster (DBClusterIdentifier alone) is preferred when published; a Role=WRITER
        # or per-instance series is taken when that is what ListMetrics finds (not hard-coded).
        cluster: Dimensions = (("DBClusterIdentifier", settings.db_cluster),)
        for metric, unit in (
            (contract.DATABASE_CONNECTIONS, "Count"),
            ("ServerlessDatabaseCapacity", "ACU"),
            ("ACUUtilization", "Percent"),
        ):
            queries.append(
                MetricQuery(DATABASE_ARM, "AWS/RDS", metric, "Maximum", 60, cluster, unit)
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
            queries.append(
                MetricQuery(
                    API_ARM,
                    "AWS/ApiGateway",
                    metric,
                    stat,
                    60,
                    dims,
                    unit,
                    sentinel=metric == "Count",
                )
            )
    return queries


def discovery_filters(settings: CloudWatchSettings) -> list[tuple[str, str, str]]:
    """(namespace, dimension, value) of each ListMetrics call: by function, capacity
    provider, cluster and API name."""
    filters = [("AWS/Lambda", "FunctionName", fn) for fn in settings.function_names.values()]
    if settings.capacity_provider:
        filters.append(("AWS/Lambda", "CapacityProviderName", settings.capacity_provider))
    if settings.db_cluster:
        filters.append(("AWS/RDS", "DBClusterIdentifier", settings.db_cluster))
    if settings.api_name:
        filters.append(("AWS/ApiGateway", "ApiName", settings.api_name))
    return filters


def discover(client: CloudWatchClient, settings: CloudWatchSettings) -> set[SeriesId]:
    """Every series CloudWatch has for the stack's resources (ListMetrics, pages followed)."""
    found: set[SeriesId] = set()
    paginator = client.get_paginator("list_metrics")
    for namespace, name, value in discovery_filters(settings):
        pages = paginator.paginate(Namespace=namespace, Dimensions=[{"Name": name, "Value": value}])
        for page in pages:
            for metric in page.get("Metrics", []):
                dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
                found.add((metric.get("Namespace", namespace), metric["MetricName"], dims))
    return found


def _preference(query: MetricQuery, dims: Dimensions) -> tuple[int, int, int]:
    """Lower is better: the exact dimensions asked for, then the LMI version's Resource,
    then the fewest extra dimensions (a whole function or cluster, not one version or role)."""
    exact = 0 if dims == tuple(sorted(query.dimensions)) else 1
    lmi = 0 if any(k == "Resource" and v.endswith(LMI_VERSION) for k, v in dims) else 1
    return exact, lmi, len(dims)


def resolve(queries: Sequence[MetricQuery], discovered: set[SeriesId]) -> list[MetricQuery | None]:
    """Each query with the dimensions of the series found for it, or None when CloudWatch
    has no series that matches (shown as missing, never as 0)."""
    resolved: list[MetricQuery | None] = []
    for query in queries:
        need = set(query.required)
        candidates = [
            dims
            for namespace, metric, dims in discovered
            if namespace == query.namespace and metric == query.metric and need <= set(dims)
        ]
        if not candidates:
            resolved.append(None)
            continue
        best = min(candidates, key=lambda dims: (_preference(query, dims), dims))
        resolved.append(replace(query, dimensions=best))
    return resolved


def query_window(
    start: datetime, end: datetime, queries: Sequence[MetricQuery]
) -> tuple[datetime, datetime]:
    """Start floored and end ceiled to the queries' longest period, so every period is whole
    and the one holding the end of the load is included. Called once per period: a 1-minute
    series gets a window rounded to the minute, never to the 5 minutes of LMI series."""
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
    """All queries, one window per period (a GetMetricData call per period and 500
    queries), each call's NextToken pages followed to the end."""
    result = FetchResult(points={i: [] for i in range(len(queries))})
    for period in sorted({q.period for q in queries}):
        indexed = [(i, q) for i, q in enumerate(queries) if q.period == period]
        window_start, window_end = query_window(start, end, [q for _, q in indexed])
        for offset in range(0, len(indexed), MAX_QUERIES_PER_CALL):
            batch = indexed[offset : offset + MAX_QUERIES_PER_CALL]
            api_queries = [q.to_api(f"q{i}") for i, q in batch]
            _fetch_batch(client, api_queries, window_start, window_end, result)
    return result


def _fetch_batch(
    client: CloudWatchClient,
    api_queries: list[MetricDataQueryTypeDef],
    start: datetime,
    end: datetime,
    result: FetchResult,
) -> None:
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


def to_frame(queries: Sequence[MetricQuery], result: FetchResult, start: datetime) -> pd.DataFrame:
    """Datapoints as dataset rows; a series with no datapoint (or none found by ListMetrics)
    is one row with an empty value at the window start, so 'CloudWatch had nothing' is
    visible as missing and never read as 0."""
    rows = RowBuffer()
    for index, query in enumerate(queries):
        points = sorted(result.points.get(index, []))
        if not points:
            window_start, _ = query_window(start, start, [query])
            rows.add(
                format_time(window_start),
                query.arm,
                query.metric,
                query.stat,
                None,
                query.unit,
                SOURCE,
            )
        for stamp, value in points:
            rows.add(
                format_time(stamp), query.arm, query.metric, query.stat, value, query.unit, SOURCE
            )
    return rows.to_frame()


def incomplete_sentinels(
    queries: Sequence[MetricQuery | None],
    wanted: Sequence[MetricQuery],
    result: FetchResult,
    end: datetime,
) -> list[str]:
    """The sentinel series (each function's Invocations, the LMI concurrency, the API's
    Count) not yet found, or found without a datapoint in the period holding `end`."""
    waiting = []
    for index, (query, asked) in enumerate(zip(queries, wanted, strict=True)):
        if not asked.sentinel:
            continue
        label = f"{asked.arm} {asked.metric}"
        if query is None:
            waiting.append(label)
            continue
        last_start = math.floor((end.timestamp() - 1) / query.period) * query.period
        if not any(stamp.timestamp() >= last_start for stamp, _ in result.points.get(index, [])):
            waiting.append(label)
    return waiting


@dataclass(frozen=True)
class Clock:
    """Time and sleep, injectable so waiting can be tested without waiting."""

    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = field(default=time.sleep)


def wait_bound(end: datetime, queries: Sequence[MetricQuery]) -> tuple[datetime, str]:
    """The latest moment the wait goes on to, and why, in words for the user."""
    deadline = ready_at(end, queries) + EXTRA_POLL_LIMIT
    longest = max((q.period for q in queries), default=60)
    period_end = datetime.fromtimestamp(math.ceil(end.timestamp() / longest) * longest, UTC)
    lag = PUBLICATION_LAG.get(longest, timedelta(seconds=longest))
    kind = "Managed Instances metrics come in 5-minute periods" if longest >= 300 else (
        "Lambda, RDS and API Gateway metrics come in 1-minute periods"
    )  # fmt: skip
    why = (
        f"{kind}, published up to {lag.seconds // 60} min after the period holding the load's "
        f"end ({period_end:%H:%M} UTC), plus {EXTRA_POLL_LIMIT.seconds // 60} min for late data"
    )
    return deadline, why


@dataclass
class WaitReporter:
    """Where the wait is shown: a line a minute when stderr is not a terminal (CI logs), a
    line per poll otherwise. Nothing at all would look like a hang."""

    console: Console
    clock: Clock
    last: datetime | None = None

    def say(self, text: str, *, force: bool = False) -> None:
        now = self.clock.now()
        every = timedelta(minutes=1) if not self.console.is_terminal else timedelta(seconds=30)
        if force or self.last is None or now - self.last >= every:
            self.console.print(text, soft_wrap=True)  # one line each, as in a log
            self.last = now


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

    Each round discovers the stack's series (ListMetrics) and queries those found. With
    `wait`, rounds repeat every 30 s from a minute after the load's end until every sentinel
    series has its last period, or until the stated bound; without, one round.
    """
    clock = clock or Clock()
    wanted = build_queries(settings)
    cw = client or make_client(settings)
    deadline, why = wait_bound(end, wanted)
    reporter = WaitReporter(console or Console(stderr=True, file=sys.stderr), clock)
    if wait:
        left = max(0.0, (deadline - clock.now()).total_seconds())
        reporter.say(
            f"waiting for CloudWatch: up to {left / 60:.1f} min (until {deadline:%H:%M:%S} UTC)"
            f": {why}; stops as soon as every series has its last period",
            force=True,
        )
        first_poll = end + FIRST_POLL_DELAY
        while clock.now() < first_poll:
            clock.sleep(min(1.0, (first_poll - clock.now()).total_seconds()))
    calls = 0
    while True:
        resolved = resolve(wanted, discover(cw, settings))
        found = [q for q in resolved if q is not None]
        fetched = fetch(cw, found, start, end)
        calls += fetched.calls
        result = FetchResult(calls=fetched.calls)
        positions = iter(range(len(found)))
        for index, query in enumerate(resolved):
            result.points[index] = [] if query is None else fetched.points[next(positions)]
        waiting = incomplete_sentinels(resolved, wanted, result, end)
        if not wait or not waiting:
            break
        if clock.now() >= deadline:
            reporter.say(
                f"CloudWatch has not published {', '.join(waiting)} by {deadline:%H:%M:%S} UTC:"
                " those periods are shown as missing",
                force=True,
            )
            break
        left = (deadline - clock.now()).total_seconds() / 60
        reporter.say(
            f"still waiting for CloudWatch ({', '.join(waiting)}): up to {left:.1f} min left"
        )
        clock.sleep(POLL_INTERVAL_S)
    final = [q if q is not None else w for q, w in zip(resolved, wanted, strict=True)]
    return to_frame(final, result, start), calls
