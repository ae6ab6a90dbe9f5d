"""analysis/summary.py's parts on hand-made inputs: the verdict sentence, what to check when no DB
sample exists, the ratios, and the metrics a frame lacks (mutants tests/analysis let through)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from analysis import dataset, summary
from analysis.runfolder import RunFolder
from analysis.summary import ArmSummary, RunSummary


def arm(name: str, ratio: float | None, successes: int = 10, **more: Any) -> ArmSummary:
    return ArmSummary(
        arm=name,
        label=summary.arm_label(name),
        requests=successes,
        failures=0,
        successes=successes,
        failure_rate=0.0,
        p50_ms=None,
        p95_ms=None,
        p99_ms=None,
        peak_concurrency=None,
        peak_execution_environments=None,
        peak_execution_environments_serving=None,
        peak_db_connections=more.pop("peak_db_connections", 1.0),
        db_connections_per_concurrent_request=ratio,
        queries_per_s=None,
        seconds_per_query=0.001,
        seconds_per_query_source="assumed",
        littles_law_floor=None,
        **more,
    )


def test_the_verdict_orders_the_arms_by_connections_per_request() -> None:
    arms = [arm("standard", 1.0), arm("proxy", 0.5), arm("managed", 0.123)]
    assert summary.verdict(arms) == (
        "Managed Instances used 0.12 DB connections per concurrent request; "
        "standard Lambda + shared pooler used 0.50; standard Lambda used 1.00."
    )
    assert summary.verdict([arm("standard", 0.996)]) == (
        "Standard Lambda used 1.00 DB connections per concurrent request."
    )
    # an arm label the report does not know is used as it is
    assert summary.arm_label("other") == "other"


def test_the_verdict_leaves_out_an_arm_without_a_success_or_a_ratio() -> None:
    arms = [arm("managed", 0.1, successes=0), arm("standard", None), arm("proxy", 0.7)]
    assert summary.verdict(arms) == (
        "Standard Lambda + shared pooler used 0.70 DB connections per concurrent request."
    )


def test_the_verdict_says_why_nothing_can_be_compared() -> None:
    assert summary.verdict([arm("standard", 1.0, successes=0)]) == (
        "No arm had a successful request, so none can be compared."
    )
    no_db = [arm("standard", None, peak_db_connections=None)]
    assert summary.verdict(no_db) == (
        "No arm has DB connection samples, so none can be compared: the run recorded none "
        "(local: samples.jsonl; aws: the probe function)."
    )
    mixed = [arm("standard", None), arm("managed", None, peak_db_connections=None)]
    assert summary.verdict(mixed) == (
        "No arm has both DB connection and concurrency samples, so none can be compared."
    )
    assert summary.verdict([]).startswith("No arm has DB connection samples")


def test_no_db_samples_points_at_the_probe_and_its_counts() -> None:
    probe = {"function": "probe-fn", "samples": 2, "failures": 3, "first_error": "timeout"}
    assert summary._no_db_why(probe) == (
        "the probe probe-fn returned 2 samples and 3 failures (first: timeout); check its log "
        "group in CloudWatch Logs and that it can reach the cluster."
    )
    assert summary._no_db_why({"function": "f"}) == (
        "the probe f returned 0 samples and 0 failures; check its log group in CloudWatch Logs "
        "and that it can reach the cluster."
    )


def test_ratios_are_none_without_a_denominator_or_a_numerator() -> None:
    assert summary._ratio(3.0, 4.0) == 0.75
    assert summary._ratio(None, 4.0) is None
    assert summary._ratio(3.0, 0.0) is None
    assert summary._ratio(3.0, None) is None
    assert summary._ratio(0.0, 2.0) == 0.0


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ({"query_ms": 2.5}, (0.0025, "manifest scenario.query_ms")),
        ({"query_ms": 3}, (0.003, "manifest scenario.query_ms")),
        ({"query_ms": 0}, (0.001, "assumed (no scenario.query_ms in manifest)")),
        ({"query_ms": True}, (0.001, "assumed (no scenario.query_ms in manifest)")),
        ({"query_ms": "2"}, (0.001, "assumed (no scenario.query_ms in manifest)")),
        ({}, (0.001, "assumed (no scenario.query_ms in manifest)")),
    ],
)
def test_query_seconds_come_from_the_manifest_when_measured(
    scenario: dict[str, Any], expected: tuple[float, str]
) -> None:
    assert summary._query_seconds(scenario) == expected


def frame(rows: list[tuple[str, str, str, str, float | None, str]]) -> Any:
    buffer = dataset.RowBuffer()
    for time, arm_name, metric, stat, value, source in rows:
        buffer.add(time, arm_name, metric, stat, value, "Count", source)
    return buffer.to_frame()


T0, T1 = "2026-11-22T10:00:00Z", "2026-11-22T10:01:00Z"


def test_missing_metrics_lists_cloudwatch_series_without_any_value() -> None:
    data = frame(
        [
            (T0, "managed", "Throttles", "Sum", None, "cloudwatch"),
            (T1, "managed", "Throttles", "Sum", None, "cloudwatch"),
            (T0, "standard", "Throttles", "Sum", None, "cloudwatch"),
            (T1, "standard", "Throttles", "Sum", 2.0, "cloudwatch"),
            (T0, "api", "Count", "Sum", None, "cloudwatch"),
            (T0, "managed", "DatabaseConnections", "Maximum", None, "probe"),
        ]
    )
    assert summary.missing_metrics(data) == ["api Count Sum", "managed Throttles Sum"]
    assert summary.missing_metrics(frame([(T0, "managed", "X", "Sum", None, "local")])) == []


def test_totals_and_peaks_read_only_their_statistic() -> None:
    data = frame(
        [
            (T0, "api", "Count", "Sum", 5.0, "cloudwatch"),
            (T1, "api", "Count", "Sum", 7.0, "cloudwatch"),
            (T0, "api", "Count", "Maximum", 100.0, "cloudwatch"),
            (T0, "api", "Latency", "p99", 40.0, "cloudwatch"),
            (T1, "api", "Latency", "p99", 30.0, "cloudwatch"),
            (T0, "api", "Latency", "Average", 90.0, "cloudwatch"),
        ]
    )
    assert summary.total(data, "api", "Count") == 12.0
    assert summary.total(data, "api", "Nothing") is None
    assert summary.peak_of(data, "api", "Latency", "p99") == 40.0
    assert summary.peak_of(data, "api", "Latency", "p50") is None
    assert summary._asked(data, "api", "Latency")
    assert not summary._asked(data, "managed", "Latency")


def test_a_run_summary_finds_its_arms_by_name() -> None:
    managed, standard = arm("managed", 0.1), arm("standard", 1.0)
    run = RunSummary(
        run_id="r",
        target="local",
        status="completed",
        command="c",
        load_seconds=1.0,
        arms=[managed, standard],
        database_peak_connections=None,
        verdict="v",
    )
    assert run.arm("standard") is standard
    assert run.arm("managed") is managed
    with pytest.raises(KeyError, match="proxy"):
        run.arm("proxy")
    assert run.to_json()["arms"][1]["arm"] == "standard"
    assert replace(run, arms=[]).to_json()["arms"] == []


def test_warnings_say_what_a_reader_must_know_before_trusting_the_table() -> None:
    folder = RunFolder(path=Path("/runs/r1"), manifest={"status": "interrupted", "target": "aws"})
    arms = [
        arm("managed", 0.1, throttles=1234.0, peak_db_connections=None),
        replace(arm("standard", 1.0, successes=0), failures=5, peak_concurrency=3.0),
    ]
    assert summary.warnings_for(arms, folder, {"standard": object()}) == [
        "The run's status is 'interrupted', not 'completed': numbers may be partial.",
        "Locust recorded no requests for arm 'managed'.",
        "Arm 'managed' was throttled 1,234 times (Lambda's 429, answered 500 as API Gateway "
        "does, so Locust counts them as failures): give it more capacity (--slots-per-ee, "
        "--max-ees, --concurrency-limit) or fewer users.",
        "No DatabaseConnections samples for arm 'managed'.",
        "No ConcurrentExecutions samples for arm 'managed': run `poolbench collect /runs/r1 "
        "--target aws` to read CloudWatch.",
        "Arm 'standard' had zero successful requests (5 failures): its latency and ratios say "
        "nothing about pooling.",
    ]
    local = RunFolder(path=Path("/runs/r2"), manifest={})
    assert summary.warnings_for([arm("standard", 1.0)], local, {"standard": object()}) == [
        "The run's status is 'unknown', not 'completed': numbers may be partial.",
        "No ConcurrentExecutions samples for arm 'standard'.",
    ]
    done = RunFolder(path=Path("/runs/r3"), manifest={"status": "completed"})
    calm = replace(arm("standard", 1.0), peak_concurrency=1.0, throttles=0.0)
    assert summary.warnings_for([calm], done, {"standard": object()}) == []


def test_load_seconds_come_from_the_window_and_are_none_without_one() -> None:
    window = {"load_started_at": "2026-11-22T10:00:00Z", "load_ended_at": "2026-11-22T10:01:30Z"}
    assert summary._load_seconds(RunFolder(Path("/r"), window)) == 90.0
    assert summary._load_seconds(RunFolder(Path("/r"), {})) is None
    empty = {"load_started_at": "2026-11-22T10:00:00Z", "load_ended_at": "2026-11-22T10:00:00Z"}
    assert summary._load_seconds(RunFolder(Path("/r"), empty)) is None


def test_the_verdict_says_what_the_pooler_did_against_each_arm_s_twin() -> None:
    assert summary.verdict([arm("direct", 1.0), arm("standard", 0.5)]) == (
        "Standard Lambda used 0.50 DB connections per concurrent request; standard Lambda "
        "without a pooler used 1.00. Standard Lambda used 0.50 with its in-EE PgBouncer "
        "(standard) and 1.00 without (direct): the pooler cuts it by 50%."
    )
    raised = summary.verdict([arm("managed-direct", 0.2), arm("managed", 0.3)])
    assert raised.endswith(
        " Managed Instances used 0.30 with its in-EE PgBouncer (managed) and 0.20 without "
        "(managed-direct): the pooler raises it by 50%."
    )
    same = summary.verdict([arm("direct", 0.5), arm("standard", 0.52)])
    assert same.endswith("(direct): the pooler changes nothing there.")
    nothing_without = summary.verdict([arm("direct", 0.0), arm("standard", 0.4)])
    assert nothing_without.startswith("Standard Lambda without a pooler used 0.00")
    assert nothing_without.endswith("and 0.00 without (direct): the pooler changes nothing there.")


def test_every_pair_gets_its_sentence_and_an_arm_without_a_twin_none() -> None:
    arms = [
        arm("standard", 0.25),
        arm("proxy", 0.1),
        arm("managed", 0.05),
        arm("direct", 1.0),
        arm("managed-direct", 0.5),
        arm("other", 0.7),
    ]
    said = summary.verdict(arms)
    assert said.count(" with its in-EE PgBouncer ") == 2
    assert "(standard) and 1.00 without (direct): the pooler cuts it by 75%." in said
    assert "(managed) and 0.50 without (managed-direct): the pooler cuts it by 90%." in said
    # a twin that was not measured: no sentence
    alone = summary.verdict([arm("direct", 1.0), arm("managed", 0.5, successes=0)])
    assert " with its in-EE PgBouncer " not in alone


def test_the_verdict_counts_an_arm_with_one_success_and_sorts_a_zero_ratio_first() -> None:
    assert summary.verdict([arm("managed", 0.5, successes=1)]).startswith(
        "Managed Instances used 0.50"
    )
    assert summary.verdict([arm("standard", 0.5), arm("managed", 0.0)]).startswith(
        "Managed Instances used 0.00 DB connections per concurrent request; standard Lambda"
    )
    folder = RunFolder(path=Path("/r"), manifest={"status": "completed"})
    one = replace(arm("standard", 1.0, successes=1), peak_concurrency=1.0)
    assert summary.warnings_for([one], folder, {"standard": object()}) == []


def test_a_one_second_window_is_one_second() -> None:
    window = {"load_started_at": "2026-11-22T10:00:00Z", "load_ended_at": "2026-11-22T10:00:01Z"}
    assert summary._load_seconds(RunFolder(Path("/r"), window)) == 1.0


def test_a_twin_at_zero_connections_per_request_is_a_full_cut() -> None:
    assert summary.verdict([arm("direct", 1.0), arm("standard", 0.0)]).endswith(
        "Standard Lambda used 0.00 with its in-EE PgBouncer (standard) and 1.00 without "
        "(direct): the pooler cuts it by 100%."
    )


def test_throttles_per_second_divide_a_cloudwatch_sum_by_its_period() -> None:
    buffer = dataset.RowBuffer()
    buffer.add(T0, "managed", "Throttles", "Sum", 120.0, "Count", "cloudwatch")  # over 60 s
    buffer.add(T1, "managed", "Throttles", "Sum", 3.0, "Count", "local")  # one second
    buffer.add(T1, "managed", "Throttles", "Sum", 60.0, "Count", "cloudwatch")
    buffer.add(T1, "managed", "Throttles", "Maximum", 999.0, "Count", "local")  # not a Sum
    buffer.add(T0, "standard", "Throttles", "Sum", None, "Count", "local")
    data = buffer.to_frame()
    rates = summary.per_second(data, "managed", "Throttles")
    assert rates.tolist() == [2.0, 3.0]  # 120 / 60; then max(3 / 1, 60 / 60)
    assert [str(t) for t in rates.index] == [
        "2026-11-22 10:00:00+00:00",
        "2026-11-22 10:01:00+00:00",
    ]
    assert summary.per_second(data, "standard", "Throttles").empty
    assert summary._peak(rates) == 3.0
    assert summary._peak(summary.per_second(data, "proxy", "Throttles")) is None


def test_a_managed_instances_sum_covers_five_minutes() -> None:
    buffer = dataset.RowBuffer()
    buffer.add(T0, "managed", "ConcurrencyThrottles", "Sum", 600.0, "Count", "cloudwatch")
    assert summary.per_second(buffer.to_frame(), "managed", "ConcurrencyThrottles").tolist() == [
        2.0
    ]


def test_one_success_without_db_samples_is_not_no_success() -> None:
    one = arm("standard", None, successes=1, peak_db_connections=None)
    assert summary.verdict([one]).startswith("No arm has DB connection samples")
