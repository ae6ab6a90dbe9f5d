"""Local run folder -> metrics.csv -> summary.json, charts and report.html, end to end."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from analysis.collect import collect
from analysis.report import build_report
from analysis.summary import summarize
from tests.analysis.expected import expected_arm, raw_samples
from tests.analysis.factory import ArmProfile, RunSpec, make_run_folder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _close(actual: object, expected: object) -> bool:
    if expected is None or actual is None:
        return actual is expected
    assert isinstance(actual, int | float) and isinstance(expected, int | float)
    return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)


def test_collect_local_turns_every_sample_into_tidy_rows(run_dir: Path) -> None:
    # Given a local run with 60 one-second samples
    # When it is collected
    path = collect(run_dir)
    # Then metrics.csv has the contract's columns and one row per sampled value
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["time", "arm", "metric", "stat", "value", "unit", "source"]
    samples = raw_samples(run_dir)
    conc = [
        r for r in rows
        if r["arm"] == "standard" and r["metric"] == "ConcurrentExecutions"
    ]  # fmt: skip
    assert [float(r["value"]) for r in conc] == [
        float(s["arms"]["standard"]["ConcurrentExecutions"]) for s in samples
    ]
    assert {r["stat"] for r in conc} == {"Maximum"}
    assert conc[0]["time"] == samples[0]["time"]
    pool = [r for r in rows if r["metric"] == "PoolServerActive" and r["arm"] == "managed"]
    assert {r["source"] for r in pool} == {"pgbouncer:ee-1", "pgbouncer:ee-2", "pgbouncer:ee-3"}
    assert sum(float(r["value"]) for r in pool if r["time"] == samples[-1]["time"]) == sum(
        ee["pool"]["sv_active"] for ee in samples[-1]["arms"]["managed"]["ees"].values()
    )
    db_total = [r for r in rows if r["arm"] == "database"]
    assert len(db_total) == len(samples)
    # Counters are sums within the second; nothing is written for a metric an arm lacks
    assert {r["stat"] for r in rows if r["metric"] == "Throttles"} == {"Sum"}
    assert not [
        r for r in rows
        if r["arm"] == "standard" and r["metric"] == "ExecutionEnvironmentConcurrencyLimit"
    ]  # fmt: skip


def test_summary_json_equals_numbers_recomputed_from_raw_files(run_dir: Path) -> None:
    # When the report is built
    build_report(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    # Then every per-arm number equals the hand computation from samples.jsonl + Locust CSV
    by_arm = {a["arm"]: a for a in summary["arms"]}
    for arm in ("standard", "managed"):
        want = expected_arm(run_dir, arm)
        for key, value in want.items():
            assert _close(by_arm[arm][key], value), (arm, key, by_arm[arm][key], value)
    # And the standard arm sits at one connection per request, managed far below
    assert by_arm["standard"]["db_connections_per_concurrent_request"] == 1.0
    assert by_arm["managed"]["db_connections_per_concurrent_request"] < 0.5
    assert summary["verdict"] == (
        f"Managed Instances used {by_arm['managed']['db_connections_per_concurrent_request']:.2f}"
        " DB connections per concurrent request; standard Lambda used 1.00."
    )
    assert summary["database_peak_connections"] == max(
        s["database"]["connections_total"] for s in raw_samples(run_dir)
    )


def test_summarize_is_the_api_for_the_run_command(run_dir: Path) -> None:
    # The lead's `poolbench run` calls summarize(run_dir) for its closing table;
    # write=False reads only
    before = sorted(p.name for p in run_dir.iterdir())
    assert summarize(run_dir, write=False).arm("standard").requests == 1000
    assert sorted(p.name for p in run_dir.iterdir()) == before
    summary = summarize(run_dir)
    assert [a.arm for a in summary.arms] == ["standard", "managed"]
    assert summary.arm("managed").failures == 46
    assert (run_dir / "summary.json").is_file()
    assert (run_dir / "metrics.csv").is_file()


def test_report_is_one_self_contained_file_with_charts(run_dir: Path) -> None:
    report = build_report(run_dir)
    html = report.read_text(encoding="utf-8")
    # Images are inline PNGs, nothing is fetched: no script, no external URL in src/href
    images = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(images) == 7
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html
    # The verdict, the reproduce command and versions are there; CloudWatch's resolution note
    # is not, on a local report
    assert "DB connections per concurrent request" in html
    assert "poolbench run --preset seed" in html
    assert "1.18.0" in html
    assert "CloudWatch Lambda and RDS metrics" not in html
    # The scenario table labels per-arm and total figures, with units, in words
    assert '<th scope="row">users per arm</th><td>40</td>' in html
    assert '<th scope="row">users started per second, all arms</th><td>100/s</td>' in html
    assert '<th scope="row">handler sleep per request</th><td>5,000 ms</td>' in html
    assert '<th scope="row">one connection held per request</th><td>yes</td>' in html
    assert '<th scope="row">arms</th><td>standard, managed</td>' in html
    assert "duration" not in html.split('id="scenario"')[1].split("</table>")[0]  # unset
    charts = sorted(p.name for p in (run_dir / "charts").iterdir())
    assert charts == [
        "ee_concurrency.png",
        "latency.png",
        "peaks.png",
        "pools.png",
        "ratio.png",
        "throttles.png",
        "timeline.png",
    ]
    for chart in (run_dir / "charts").iterdir():
        assert chart.read_bytes().startswith(PNG_MAGIC)
    # No temporary files are left behind by the atomic writes
    assert not [p for p in run_dir.rglob("*.tmp")]


def _outputs(run_dir: Path) -> dict[str, bytes]:
    """Everything `report` writes; the page without its own generation time."""
    names = [
        "summary.json",
        "metrics.csv",
        *(f"charts/{p.name}" for p in (run_dir / "charts").glob("*.png")),
    ]
    files = {n: (run_dir / n).read_bytes() for n in names}
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    files["report.html"] = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "<time>", page).encode()
    return files


def test_aws_report_carries_the_metric_resolution_note(tmp_path: Path) -> None:
    from analysis.dataset import write_metrics
    from analysis.local_source import read_samples

    run = make_run_folder(tmp_path, RunSpec(target="aws"))
    write_metrics(read_samples(run / "samples.jsonl", source="probe"), run / "metrics.csv")
    html = build_report(run).read_text()
    assert "CloudWatch Lambda and RDS metrics 1 min" in html
    assert "Managed Instances metrics 5 min" in html


def test_report_is_idempotent(run_dir: Path) -> None:
    build_report(run_dir)
    first = _outputs(run_dir)
    build_report(run_dir)
    second = _outputs(run_dir)
    build_report(run_dir)
    assert len([n for n in first if n.startswith("charts/")]) >= 4
    for name in ("summary.json", "metrics.csv"):
        assert first[name] == second[name], name
    # Every file, page and charts too, once metrics.csv exists (the first build reads the
    # samples themselves, and one chart of it can still differ in its lines' order)
    assert second == _outputs(run_dir)


def test_zero_successful_requests_still_renders_with_a_warning(tmp_path: Path) -> None:
    spec = RunSpec(
        arms={
            "standard": ArmProfile(requests=500, failures=0),
            "managed": ArmProfile(requests=300, failures=300, ees=3, server_per_client=0.25),
        }
    )
    run = make_run_folder(tmp_path, spec)
    html = build_report(run).read_text(encoding="utf-8")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["arms"][1]["successes"] == 0
    assert any("zero successful requests" in w for w in summary["warnings"])
    assert 'class="warnings"' in html
    assert "Arm &#39;managed&#39; had zero successful requests" in html


def test_truncated_last_sample_line_is_skipped(run_dir: Path) -> None:
    # Given a recorder that was killed mid-line
    want = expected_arm(run_dir, "standard")["peak_concurrency"]
    samples = run_dir / "samples.jsonl"
    good = samples.read_text(encoding="utf-8")
    samples.write_text(good + '{"time": "2026-11-22T10:01:01Z", "arms": {"stan', encoding="utf-8")
    # Then the complete lines still count
    summary = summarize(run_dir, write=False)
    assert summary.arm("standard").peak_concurrency == want


def test_report_on_an_uncollected_aws_run_points_to_collect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An aws run whose CloudWatch metrics were never collected: `report` says how to get them
    # (it used to blame "the local metrics recorder"), one line, exit 2, nothing written
    from poolbench.cli import main

    run = make_run_folder(tmp_path, RunSpec(target="aws"))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"poolbench collect {run} --target aws" in err
    assert not (run / "metrics.csv").exists()


def test_metric_an_arm_lacks_is_missing_not_zero(tmp_path: Path) -> None:
    # An aws run collected with only the probe's samples: the probe has only
    # DatabaseConnections, so concurrency (and the ratio) are unknown, not 0
    from analysis.dataset import write_metrics
    from analysis.local_source import read_samples

    run = make_run_folder(tmp_path, RunSpec(target="aws"))
    write_metrics(read_samples(run / "samples.jsonl", source="probe"), run / "metrics.csv")
    summary = summarize(run)
    standard = summary.arm("standard")
    assert standard.peak_db_connections is not None
    assert standard.peak_concurrency is None
    assert standard.db_connections_per_concurrent_request is None
    html = build_report(run).read_text(encoding="utf-8")
    assert "n/a" in html
    data = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert data["arms"][0]["peak_concurrency"] is None
    assert any("--target aws" in w for w in data["warnings"])


@pytest.mark.parametrize("stat_pct", ["50%", "95%", "99%"])
def test_real_locust_247_csvs_are_read(stat_pct: str) -> None:
    # Files from a real `locust --headless --csv ... --csv-full-history` run (Locust 2.47)
    from analysis.locust_results import read_failures, read_history, read_stats

    data = Path(__file__).parent / "data"
    stats = read_stats(data / "locust247_stats.csv")
    assert set(stats) == {"standard", "managed"}
    assert (stats["managed"].requests, stats["managed"].failures) == (25, 25)
    with (data / "locust247_stats.csv").open(encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == "standard")
    attr = {"50%": "p50_ms", "95%": "p95_ms", "99%": "p99_ms"}[stat_pct]
    assert getattr(stats["standard"], attr) == float(row[stat_pct])
    history = read_history(data / "locust247_stats_history.csv")
    assert set(history["arm"]) == {"standard", "managed"}
    assert read_failures(data / "locust247_failures.csv")[0].occurrences == 25


def test_an_arm_without_a_successful_request_gets_no_verdict(tmp_path: Path) -> None:
    # Given a run whose managed arm failed every request (its DB and concurrency samples
    # still exist), the verdict names only the standard arm
    arms = {
        "standard": ArmProfile(requests=100, failures=0, ees=None),
        "managed": ArmProfile(requests=100, failures=100, ees=3, server_per_client=0.25),
    }
    run = make_run_folder(tmp_path, RunSpec(arms=arms))
    summary = summarize(run)
    assert summary.arm("managed").db_connections_per_concurrent_request is not None
    assert summary.verdict.startswith("Standard Lambda used")
    assert "Managed Instances" not in summary.verdict


def test_no_db_samples_verdict_names_the_probe_and_its_first_error(tmp_path: Path) -> None:
    # Given an aws run whose probe never returned a sample (CloudWatch had concurrency)
    from analysis.dataset import RowBuffer, write_metrics

    run = make_run_folder(tmp_path, RunSpec(target="aws"))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["probe"] = {
        "function": "PoolbenchStack-Probe", "interval_s": 5.0, "samples": 0, "failures": 12,
        "first_error": "function error OperationalError: connection timeout",
    }  # fmt: skip
    (run / "manifest.json").write_text(json.dumps(manifest))
    rows = RowBuffer()
    for arm in ("standard", "managed"):
        rows.add("2026-11-22T10:00:00Z", arm, "ConcurrentExecutions", "Maximum", 50.0, "Count",
                 "cloudwatch")  # fmt: skip
    write_metrics(rows.to_frame(), run / "metrics.csv")
    summary = summarize(run)
    assert summary.verdict == (
        "No arm has DB connection samples, so none can be compared: the probe "
        "PoolbenchStack-Probe returned 0 samples and 12 failures (first: function error "
        "OperationalError: connection timeout); check its log group in CloudWatch Logs and "
        "that it can reach the cluster."
    )
    assert summary.probe["failures"] == 12


def test_littles_law_floor_uses_the_query_time_the_poolers_measured(run_dir: Path) -> None:
    # Given a run whose poolers measured 0.84 ms per query (manifest scenario.query_ms)
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["scenario"]["query_ms"] = 0.84
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    arm = summarize(run_dir, write=False).arm("standard")

    # Then the floor is queries/s x 0.84 ms, not the assumed 1 ms
    qps = expected_arm(run_dir, "standard")["queries_per_s"]
    assert arm.seconds_per_query == pytest.approx(0.00084)
    assert arm.seconds_per_query_source == "manifest scenario.query_ms"
    assert arm.littles_law_floor == pytest.approx(qps * 0.00084)


def test_people_rounding_keeps_three_significant_digits_and_at_most_three_decimals() -> None:
    from analysis.report import people

    assert people(0.5572659999999999) == "0.557"  # the query time the report used to print
    assert people(1.1051527777777779) == "1.11"
    assert people(12.3456) == "12.3"
    assert people(1234.56) == "1,235"
    assert people(2000.0) == "2,000"
    assert people(0.0004) == "< 0.001"
    assert people(None) == "n/a"
    assert people(True) == "yes"


def test_the_verdict_says_what_the_pooler_did_to_each_execution_model(tmp_path: Path) -> None:
    # Given all four arms: each pooled one next to its twin without a pooler (no per-EE pools)
    arms = {
        "standard": ArmProfile(requests=100, ees=None, server_per_client=1.0),
        "managed": ArmProfile(requests=100, ees=3, server_per_client=0.25),
        "direct": ArmProfile(requests=100, ees=None, in_ee_pooler=False),
        "managed-direct": ArmProfile(requests=100, ees=3, in_ee_pooler=False),
    }
    summary = summarize(make_run_folder(tmp_path, RunSpec(arms=arms)))
    ratio = {a.arm: a.db_connections_per_concurrent_request for a in summary.arms}
    assert ratio["managed"] is not None and ratio["managed-direct"] is not None
    assert ratio["managed"] < ratio["managed-direct"]
    # Then the ranking names every arm, and one sentence per pair says what the pooler did
    for label in ("Managed Instances without a pooler", "standard Lambda without a pooler"):
        assert label in summary.verdict
    cut = 1 - ratio["managed"] / ratio["managed-direct"]
    assert (
        f"Managed Instances used {ratio['managed']:.2f} with its in-EE PgBouncer (managed) and "
        f"{ratio['managed-direct']:.2f} without (managed-direct): the pooler cuts it by {cut:.0%}."
    ) in summary.verdict
    assert "without (direct): the pooler changes nothing there." in summary.verdict
