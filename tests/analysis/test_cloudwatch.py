"""The CloudWatch source against moto in server mode: real boto3 over HTTP on 127.0.0.1.

moto 5.2 computes no percentile statistics in GetMetricData (a p50 query answers HTTP 500),
so the fixture teaches moto's in-process Statistics nearest-rank percentiles; the client,
the wire format and our code are all real.
"""

from __future__ import annotations

import io
import math
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber
from moto.cloudwatch import models as cw_models
from moto.server import ThreadedMotoServer
from rich.console import Console

from analysis.cloudwatch_source import (
    Clock,
    CloudWatchSettings,
    MetricQuery,
    build_queries,
    collect_cloudwatch,
    fetch,
    make_client,
)
from analysis.collect import collect
from analysis.dataset import read_metrics
from analysis.report import build_report
from analysis.summary import summarize
from local.ports import claim_for_process
from tests.analysis.factory import RunSpec, make_run_folder, outputs_for

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

REGION = "eu-west-1"
LOAD_START = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
LOAD_END = LOAD_START + timedelta(seconds=90)


def _nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto server on a free loopback port, with percentile statistics added."""
    original = cw_models.Statistics.get_statistics_for_type

    def with_percentiles(self: Any, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            return _nearest_rank(list(self.metric_single_values_list), float(stat[1:]))
        return original(self, stat)

    cw_models.Statistics.get_statistics_for_type = with_percentiles  # type: ignore[method-assign]
    port = claim_for_process()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        cw_models.Statistics.get_statistics_for_type = original  # type: ignore[method-assign]


@pytest.fixture
def moto(endpoint: str) -> str:
    """The module's moto server, emptied before the test (moto's own reset endpoint)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return endpoint


@dataclass
class CallCounter:
    """Counts GetMetricData HTTP requests (retries included) and each call's query count,
    through botocore's event hooks."""

    calls: int = 0
    queries: list[int] = field(default_factory=list)

    def on_send(self, **_: Any) -> None:
        self.calls += 1

    def on_params(self, params: dict[str, Any], **_: Any) -> None:
        self.queries.append(len(params["MetricDataQueries"]))


def make_test_client(endpoint: str) -> tuple[CloudWatchClient, CallCounter]:
    """A real boto3 client for moto, with a call counter."""
    client = boto3.client(
        "cloudwatch",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="secret",
    )
    counter = CallCounter()
    client.meta.events.register("before-send.cloudwatch.GetMetricData", counter.on_send)
    client.meta.events.register("provide-client-params.cloudwatch.GetMetricData", counter.on_params)
    return client, counter


SeriesKey = tuple[str, str, tuple[tuple[str, str], ...], int]


def _group_key(q: MetricQuery) -> SeriesKey:
    return (q.namespace, q.metric, q.dimensions, q.period)


def seed(
    client: CloudWatchClient, queries: list[MetricQuery], skip: frozenset[str] = frozenset()
) -> dict[SeriesKey, dict[datetime, list[float]]]:
    """Puts three raw values per period for every distinct series; returns them by period."""
    seeded: dict[SeriesKey, dict[datetime, list[float]]] = {}
    for number, q in enumerate({_group_key(q): q for q in queries}.values()):
        if q.metric in skip:
            continue
        periods = [LOAD_START, LOAD_START + timedelta(seconds=q.period)] if q.period == 60 else [
            LOAD_START
        ]  # fmt: skip
        by_period: dict[datetime, list[float]] = {}
        for p_index, period_start in enumerate(periods):
            base = 10.0 * (number + 1) + 1000 * p_index
            values = [base, base + 1, base + 3]
            by_period[period_start] = values
            client.put_metric_data(
                Namespace=q.namespace,
                MetricData=[
                    {
                        "MetricName": q.metric,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in q.dimensions],
                        "Timestamp": period_start + timedelta(seconds=5 + i),
                        "Value": value,
                    }
                    for i, value in enumerate(values)
                ],
            )
        seeded[_group_key(q)] = by_period
    return seeded


def expected_stat(values: list[float], stat: str) -> float:
    """What CloudWatch's statistic is for raw values within one period."""
    if stat == "Maximum":
        return max(values)
    if stat == "Sum":
        return sum(values)
    if stat == "SampleCount":
        return float(len(values))
    if stat == "Average":
        return sum(values) / len(values)
    return _nearest_rank(values, float(stat[1:]))


def two_arm_settings() -> CloudWatchSettings:
    spec = RunSpec(target="aws", start=LOAD_START)
    return CloudWatchSettings.from_outputs(outputs_for(spec)["PoolbenchStack"])


def test_every_metric_of_issue_5_lands_with_its_seeded_values(moto: str) -> None:
    # Given a two-arm stack's outputs and moto seeded for every series
    settings = two_arm_settings()
    queries = build_queries(settings)
    client, counter = make_test_client(moto)
    seeded = seed(client, queries)
    counter.calls = 0
    # When the source collects the load window
    frame, calls = collect_cloudwatch(settings, LOAD_START, LOAD_END, client=client, wait=False)
    # Then 2 GetMetricData calls were made: one window per period (60 s and 300 s), each
    # batch under 500 queries
    assert calls == counter.calls == 2
    # And every query's datapoints equal the statistic of the seeded raw values
    names = {(q.arm, q.metric, q.stat) for q in queries}
    assert {("managed", "ExecutionEnvironmentConcurrency", "SampleCount"),
            ("database", "DatabaseConnections", "Maximum"),
            ("api", "5XXError", "Sum"), ("standard", "Duration", "p99"),
            ("managed", "MemoryThrottles", "Sum")} <= names  # fmt: skip
    for q in queries:
        rows = frame[
            (frame["arm"] == q.arm) & (frame["metric"] == q.metric) & (frame["stat"] == q.stat)
        ]
        got = {t.to_pydatetime(): v for t, v in zip(rows["time"], rows["value"], strict=True)}
        want = {t: expected_stat(v, q.stat) for t, v in seeded[_group_key(q)].items()}
        assert got == pytest.approx(want), (q.arm, q.metric, q.stat)
        assert set(rows["unit"]) == {q.unit}
        assert set(rows["source"]) == {"cloudwatch"}


def test_missing_series_is_recorded_as_missing_not_zero(moto: str) -> None:
    settings = two_arm_settings()
    queries = build_queries(settings)
    client, _ = make_test_client(moto)
    seed(client, queries, skip=frozenset({"CPUThrottles", "Throttles"}))
    frame, _ = collect_cloudwatch(settings, LOAD_START, LOAD_END, client=client, wait=False)
    missing = frame[frame["metric"].isin(["CPUThrottles", "Throttles"])]
    # one row per missing series (managed CPUThrottles; Throttles of both functions), empty value
    assert len(missing) == 3
    assert missing["value"].isna().all()
    assert not (frame["value"] == 0).any()


def test_more_than_500_queries_are_split_into_batches(moto: str) -> None:
    arms = tuple(f"arm{i}" for i in range(90))
    settings = CloudWatchSettings(arms=arms, function_names={a: f"fn-{a}" for a in arms})
    queries = build_queries(settings)
    assert len(queries) == 540
    client, counter = make_test_client(moto)
    seed(client, queries[:12])
    result = fetch(client, queries, LOAD_START, LOAD_START + timedelta(minutes=5))
    assert result.calls == counter.calls == 2
    assert counter.queries == [500, 40]
    assert result.points[0] and not result.points[539]


def test_next_token_pages_are_followed_and_merged() -> None:
    # moto never pages GetMetricData, so botocore's Stubber plays a two-page answer
    client = boto3.client(
        "cloudwatch", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    query = MetricQuery(
        "standard", "AWS/Lambda", "Invocations", "Sum", 60, (("FunctionName", "f"),), "Count"
    )
    t1, t2 = LOAD_START, LOAD_START + timedelta(minutes=1)
    with Stubber(client) as stub:
        page1 = {"Id": "q0", "Timestamps": [t1], "Values": [5.0], "StatusCode": "PartialData"}
        page2 = {"Id": "q0", "Timestamps": [t2], "Values": [7.0], "StatusCode": "Complete"}
        stub.add_response("get_metric_data", {"MetricDataResults": [page1], "NextToken": "p2"})
        stub.add_response("get_metric_data", {"MetricDataResults": [page2]})
        result = fetch(client, [query], t1, t2 + timedelta(minutes=1))
    assert result.calls == 2
    assert result.points[0] == [(t1, 5.0), (t2, 7.0)]


@dataclass
class FakeClock:
    """Time that moves only when slept."""

    at: datetime
    slept: float = 0.0

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.at += timedelta(seconds=seconds)


def _quiet_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=300), out


def test_wait_stops_as_soon_as_every_series_has_its_last_period(moto: str) -> None:
    # Given every series seeded through the period holding the load's end (10:01:30)
    settings = two_arm_settings()
    client, _ = make_test_client(moto)
    seed(client, build_queries(settings))
    fake = FakeClock(at=LOAD_END)
    console, out = _quiet_console()
    frame, calls = collect_cloudwatch(
        settings, LOAD_START, LOAD_END, client=client, wait=True,
        clock=Clock(now=fake.now, sleep=fake.sleep), console=console,
    )  # fmt: skip
    # Then it looked once, a minute after the end, and stopped (not at 10:10 as before)
    assert fake.at == LOAD_END + timedelta(minutes=1)
    assert calls == 2
    assert frame["value"].notna().all()
    first = out.getvalue().splitlines()[0]
    assert "up to 13.5 min (until 10:15:00 UTC)" in first
    assert "5-minute periods" in first


def test_wait_for_data_that_never_comes_ends_at_the_stated_bound_a_line_a_minute(
    moto: str,
) -> None:
    # Given nothing seeded: no series is ever found
    settings = two_arm_settings()
    client, _ = make_test_client(moto)
    fake = FakeClock(at=LOAD_END)
    console, out = _quiet_console()
    frame, calls = collect_cloudwatch(
        settings, LOAD_START, LOAD_END, client=client, wait=True,
        clock=Clock(now=fake.now, sleep=fake.sleep), console=console,
    )  # fmt: skip
    # Then it gave up at the bound it stated: the 300 s period holding the end (10:05) + 5
    # min publication + 5 min late data = 10:15, i.e. 13.5 min after the end
    bound = LOAD_START + timedelta(minutes=15)
    assert bound <= fake.at < bound + timedelta(seconds=31)
    assert calls == 0  # nothing found, nothing queried
    assert frame["value"].isna().all()
    lines = out.getvalue().splitlines()
    # not a terminal: a line a minute (12.5 min of polling), then the give-up line
    still = [line for line in lines if line.startswith("still waiting")]
    assert 12 <= len(still) <= 14, lines
    assert "shown as missing" in lines[-1]


def test_no_wait_makes_one_round(moto: str) -> None:
    client, counter = make_test_client(moto)
    settings = two_arm_settings()
    seed(client, build_queries(settings))
    counter.calls = 0
    fake = FakeClock(at=LOAD_END)
    collect_cloudwatch(
        settings, LOAD_START, LOAD_END, client=client, wait=False,
        clock=Clock(now=fake.now, sleep=fake.sleep),
    )  # fmt: skip
    assert (counter.calls, fake.slept) == (2, 0.0)


def test_one_window_per_period_keeps_minutes_outside_the_load_out(moto: str) -> None:
    # Given a load from 10:01:10 to 10:02:50 and a 1-minute series with a datapoint at 10:00
    # (a previous run) and one at 10:04: both inside the 5-minute window, outside the minute one
    settings = two_arm_settings()
    client, _ = make_test_client(moto)
    fn = settings.function_names["standard"]
    for minute, value in ((0, 500.0), (1, 7.0), (2, 9.0), (4, 800.0)):
        client.put_metric_data(
            Namespace="AWS/Lambda",
            MetricData=[{
                "MetricName": "ConcurrentExecutions",
                "Dimensions": [{"Name": "FunctionName", "Value": fn}],
                "Timestamp": LOAD_START + timedelta(minutes=minute, seconds=5),
                "Value": value,
            }],
        )  # fmt: skip
    # and a 5-minute LMI series, so both periods are queried in the same round
    assert settings.capacity_provider
    managed = settings.function_names["managed"]
    client.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[{
            "MetricName": "ExecutionEnvironmentConcurrency",
            "Dimensions": [
                {"Name": "CapacityProviderName", "Value": settings.capacity_provider},
                {"Name": "FunctionName", "Value": managed},
                {"Name": "Resource", "Value": f"{managed}:$LATEST.PUBLISHED"},
            ],
            "Timestamp": LOAD_START + timedelta(seconds=5), "Value": 40.0,
        }],
    )  # fmt: skip
    start, end = LOAD_START + timedelta(seconds=70), LOAD_START + timedelta(seconds=170)
    frame, _ = collect_cloudwatch(settings, start, end, client=client, wait=False)
    lmi = frame[frame["metric"] == "ExecutionEnvironmentConcurrency"]
    assert sorted(lmi["value"].dropna()) == [1.0, 40.0]  # SampleCount (one value), Maximum
    rows = frame[(frame["arm"] == "standard") & (frame["metric"] == "ConcurrentExecutions")]
    # Then only the load's minutes are read: the peak is 9, not 800 (or 500)
    assert sorted(rows["value"].dropna()) == [7.0, 9.0]


def test_discovery_takes_the_dimensions_cloudwatch_has(moto: str) -> None:
    # Given Aurora capacity published per cluster only, and the LMI concurrency with a
    # Resource the code never spelt out
    settings = two_arm_settings()
    client, _ = make_test_client(moto)
    assert settings.db_cluster and settings.capacity_provider
    managed = settings.function_names["managed"]
    client.put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[{
            "MetricName": "ServerlessDatabaseCapacity",
            "Dimensions": [{"Name": "DBClusterIdentifier", "Value": settings.db_cluster}],
            "Timestamp": LOAD_START + timedelta(seconds=5), "Value": 1.5,
        }],
    )  # fmt: skip
    client.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[{
            "MetricName": "ExecutionEnvironmentConcurrency",
            "Dimensions": [
                {"Name": "CapacityProviderName", "Value": settings.capacity_provider},
                {"Name": "FunctionName", "Value": managed},
                {"Name": "Resource", "Value": f"{managed}:7"},
            ],
            "Timestamp": LOAD_START + timedelta(seconds=5), "Value": 40.0,
        }],
    )  # fmt: skip
    frame, _ = collect_cloudwatch(settings, LOAD_START, LOAD_END, client=client, wait=False)

    def values(arm: str, metric: str, stat: str = "Maximum") -> list[float]:
        rows = frame[(frame["arm"] == arm) & (frame["metric"] == metric) & (frame["stat"] == stat)]
        return list(rows["value"].dropna())

    assert values("database", "ServerlessDatabaseCapacity") == [1.5]
    assert values("managed", "ExecutionEnvironmentConcurrency") == [40.0]
    # ACUUtilization was asked for and not found: one missing row, never 0
    acu = frame[frame["metric"] == "ACUUtilization"]
    assert len(acu) == 1 and acu["value"].isna().all()
    data = collect_summary_missing(frame)
    assert "database ACUUtilization Maximum" in data
    assert "managed ExecutionEnvironmentConcurrency Maximum" not in data


def collect_summary_missing(frame: pd.DataFrame) -> list[str]:
    from analysis.summary import missing_metrics

    return missing_metrics(frame)


def test_default_client_honours_aws_env_and_profile(
    moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AWS_PROFILE from a config file (region, standard retries), AWS_ENDPOINT_URL to moto
    config = tmp_path / "config"
    config.write_text("[profile bench]\nregion = ap-northeast-1\n", encoding="utf-8")
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[bench]\naws_access_key_id = 666666666666\naws_secret_access_key = s\n", encoding="utf-8"
    )
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "bench")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    settings = CloudWatchSettings(arms=("standard",), function_names={"standard": "f"})
    client = make_client(settings)
    assert client.meta.region_name == "ap-northeast-1"
    assert client.meta.endpoint_url == moto
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}  # type: ignore[attr-defined]
    result = fetch(client, build_queries(settings), LOAD_START, LOAD_END)
    assert result.calls == 1
    # The stack's Region beats AWS_REGION and the profile: CloudWatch is asked where the
    # stack is (with the shell on us-east-2 every series used to come back empty)
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    assert (
        make_client(CloudWatchSettings(("a",), {"a": "f"}, region=REGION)).meta.region_name
        == REGION
    )


def test_collect_aws_merges_cloudwatch_with_probe_samples(moto: str, tmp_path: Path) -> None:
    # Given an aws run folder whose probe sampled per-arm DatabaseConnections
    spec = RunSpec(target="aws", start=LOAD_START, seconds=90)
    run = make_run_folder(tmp_path, spec)
    settings = CloudWatchSettings.from_outputs(outputs_for(spec)["PoolbenchStack"])
    client, counter = make_test_client(moto)
    seeded = seed(client, build_queries(settings))
    counter.calls = 0
    # When collected with --target aws --no-wait
    path = collect(run, target="aws", wait=False, client=client)
    frame = read_metrics(path)
    # Then both sources are in metrics.csv, with two GetMetricData calls at most
    assert counter.calls <= 2
    assert set(frame["source"]) == {"cloudwatch", "probe"}
    summary = summarize(run)
    standard = summary.arm("standard")
    conc_key = (
        "AWS/Lambda",
        "ConcurrentExecutions",
        (("FunctionName", "PoolbenchStack-StandardFn"),),
        60,
    )
    want_conc = max(max(v) for v in seeded[conc_key].values())
    assert standard.peak_concurrency == want_conc
    probe = frame[(frame["source"] == "probe") & (frame["arm"] == "standard")]
    assert standard.peak_db_connections == probe["value"].max()
    assert standard.db_connections_per_concurrent_request == pytest.approx(
        float(probe["value"].max()) / want_conc
    )
    assert isinstance(frame["time"].iloc[0], pd.Timestamp)

    # And every fetched number reaches the summary: throttles (and the LMI reasons), errors,
    # duration, API Gateway 4XX/5XX and latency, Aurora capacity
    def seeded_total(
        namespace: str, metric: str, dims: tuple[tuple[str, str], ...], period: int
    ) -> float:
        return sum(sum(v) for v in seeded[(namespace, metric, dims, period)].values())

    def seeded_peak(
        namespace: str, metric: str, dims: tuple[tuple[str, str], ...], stat: str
    ) -> float:
        return max(expected_stat(v, stat) for v in seeded[(namespace, metric, dims, 60)].values())

    fn = (("FunctionName", "PoolbenchStack-StandardFn"),)
    assert standard.throttles == seeded_total("AWS/Lambda", "Throttles", fn, 60)
    assert standard.errors == seeded_total("AWS/Lambda", "Errors", fn, 60)
    assert standard.duration_p99_ms == seeded_peak("AWS/Lambda", "Duration", fn, "p99")
    managed = summary.arm("managed")
    assert set(managed.throttle_reasons) == {
        "ConcurrencyThrottles",
        "CPUThrottles",
        "MemoryThrottles",
    }
    assert all(v is not None and v > 0 for v in managed.throttle_reasons.values())
    api = (("ApiName", "poolbench"), ("Stage", "prod"))
    assert summary.api["5xx"] == seeded_total("AWS/ApiGateway", "5XXError", api, 60)
    assert summary.api["4xx"] == seeded_total("AWS/ApiGateway", "4XXError", api, 60)
    assert summary.api["latency_p99_ms"] == seeded_peak("AWS/ApiGateway", "Latency", api, "p99")
    cluster = (("DBClusterIdentifier", "poolbench-db"),)
    assert summary.database_capacity_acu == seeded_peak(
        "AWS/RDS", "ServerlessDatabaseCapacity", cluster, "Maximum"
    )
    assert summary.missing_metrics == []
    html = build_report(run).read_text()
    assert "ConcurrencyThrottles" in html and "5XX" in html and "ACU" in html
