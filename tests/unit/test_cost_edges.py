"""The cost model's edges: what each figure says it assumed, and the cases without a figure
(mutants scripts/mutation found unchecked by tests/unit/test_cost.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.cost import ArmLoad, Deployment, arm_cost, load_prices, proxy_cost, proxy_hourly

US = load_prices("us-east-1")


def test_the_proxy_note_names_the_cluster_s_acu_or_that_it_is_unknown() -> None:
    hourly, note = proxy_hourly(Deployment(), US)
    assert hourly == pytest.approx(8 * 0.015)
    assert note == (
        f"RDS Proxy 8 ACU x $0.015/ACU-h (cluster ACU unknown, minimum 8; {US.sources['proxy']})"
    )
    hourly, note = proxy_hourly(Deployment(aurora_acu=12.5), US)
    assert hourly == pytest.approx(12.5 * 0.015)
    assert note.startswith("RDS Proxy 12.5 ACU x $0.015/ACU-h (cluster ACU 12.5, minimum 8;")


def test_a_cluster_at_zero_acu_bills_the_minimum_even_when_it_is_zero() -> None:
    free = replace(US, proxy_minimum_acu=0.0)
    hourly, note = proxy_hourly(Deployment(aurora_acu=0.0), free)
    assert hourly == 0.0
    assert "RDS Proxy 0 ACU" in note and "cluster ACU 0," in note


def test_a_proxy_arm_without_a_measured_duration_has_no_figure_but_its_assumptions() -> None:
    load = ArmLoad("proxy", 10, 100.0, None, None)
    cost = proxy_cost(load, Deployment(), US)
    assert (cost.usd_per_million_requests, cost.usd_per_hour_at_this_load) == (None, None)
    assert cost.assumptions[-2] == "no mean duration or load time measured: no figure"
    assert cost.assumptions[-1].startswith("RDS Proxy 8 ACU")
    measured = proxy_cost(replace(load, mean_duration_ms=10.0), Deployment(), US)
    assert measured.assumptions[-1].startswith("RDS Proxy 8 ACU")
    assert len(measured.assumptions) == 4  # requests, GB-s, billed duration, the proxy


def test_an_arm_without_a_model_says_so() -> None:
    cost = arm_cost(ArmLoad("lambda", 1, 1.0, 1.0, None), Deployment(), US)
    assert cost.to_json() == {
        "usd_per_million_requests": None,
        "usd_per_hour_at_this_load": None,
        "assumptions": ["no cost model for arm 'lambda'"],
    }


def test_no_requests_give_an_hourly_figure_but_none_per_request() -> None:
    idle = ArmLoad("managed", 0, 100.0, None, 3)
    cost = arm_cost(idle, Deployment(), US)
    assert cost.usd_per_million_requests is None
    # 3 x m8g.large x 1.15, no requests
    assert cost.usd_per_hour_at_this_load == pytest.approx(3 * 0.08976 * 1.15, rel=1e-12)
    assert cost.assumptions[0].startswith("requests $0.2/M")
    one = arm_cost(replace(idle, requests=1), Deployment(), US)
    # one request in 100 s = 36 an hour: the hour's bill over 36 requests, per million
    hourly = 3 * 0.08976 * 1.15 + 36 / 1e6 * 0.2
    assert one.usd_per_hour_at_this_load == pytest.approx(hourly, rel=1e-12)
    assert one.usd_per_million_requests == pytest.approx(hourly / 36 * 1e6, rel=1e-12)
