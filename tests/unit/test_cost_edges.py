"""The cost model's edges: what each figure says it assumed, and the cases without a figure
(mutants scripts/mutation found unchecked by tests/unit/test_cost.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from analysis import cost as cost_module
from analysis.cost import (
    ArmLoad,
    Deployment,
    arm_cost,
    aurora_cost,
    load_prices,
    managed_instances,
    proxy_cost,
    proxy_hourly,
)
from input_errors import InputError

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


def test_prices_print_as_the_price_page_prints_them() -> None:
    assert cost_module._usd(0.0000133334) == "0.0000133334"
    assert cost_module._usd(2.0) == "2"
    assert cost_module._usd(0.5) == "0.5"
    assert cost_module._usd(10.0) == "10"


def test_the_standard_arm_says_its_billed_duration_and_needs_a_second_of_load() -> None:
    load = ArmLoad("standard", 10, 1.0, 12.34, None)
    cost = arm_cost(load, Deployment(), US)
    assert cost.assumptions[2] == (
        "billed duration = mean response time 12.3 ms (Locust's, an upper bound of Lambda's "
        "Duration)"
    )
    # 10 requests in 1 s = 36,000 an hour: 0.0072 for requests + 36,000 x 12.34 ms x 2 GB x price
    hourly = 36_000 / 1e6 * 0.2 + 36_000 * 0.01234 * 2 * 0.0000133334
    assert cost.usd_per_hour_at_this_load == pytest.approx(hourly, rel=1e-12)
    nothing = arm_cost(replace(load, load_seconds=0.0), Deployment(), US)
    assert nothing.usd_per_hour_at_this_load is None
    assert nothing.assumptions[-1] == "no mean duration or load time measured: no figure"


def test_the_managed_arm_without_an_ee_count_bills_the_minimum_and_says_so() -> None:
    load = ArmLoad("managed", 10, 1.0, None, None)
    cost = arm_cost(load, Deployment(), US)
    assert cost.assumptions[-1] == "no EE count measured: the minimum instances"
    assert cost.assumptions[1].startswith("3 x m8g.large ($0.08976/h, 2 vCPU; ")
    assert cost.assumptions[1].endswith(" for 0 EEs x 1 vCPU, minimum 3 instances")
    measured = arm_cost(replace(load, execution_environments=0.5), Deployment(), US)
    assert "no EE count measured: the minimum instances" not in measured.assumptions
    assert measured.assumptions[1].endswith(" for 0.5 EEs x 1 vCPU, minimum 3 instances")
    # one second of load is enough for a figure; none is not
    assert measured.usd_per_hour_at_this_load == pytest.approx(
        3 * 0.08976 * 1.15 + 36_000 / 1e6 * 0.2, rel=1e-12
    )
    assert (
        arm_cost(replace(load, load_seconds=0.0), Deployment(), US).usd_per_hour_at_this_load
        is None
    )


def test_an_instance_type_the_table_lacks_is_one_line() -> None:
    with pytest.raises(InputError) as error:
        arm_cost(ArmLoad("managed", 1, 1.0, None, 1), Deployment(instance_type="z9.huge"), US)
    assert str(error.value) == (
        "the price table for us-east-1 has no EC2 price for z9.huge: add it under ec2_on_demand "
        "in a --prices file"
    )


def test_half_instances_round_up_not_to_even() -> None:
    # 5 EEs x 1 vCPU / 2 vCPU = 2.5 instances: 3, where round() alone would give 2
    assert managed_instances(5, Deployment(min_instances=1), 2) == 3
    assert managed_instances(4, Deployment(min_instances=1), 2) == 2


def test_aurora_says_its_price_and_whether_the_acu_is_known() -> None:
    unknown = aurora_cost(Deployment(), US)
    assert unknown.assumptions == [
        f"Aurora Serverless v2 $0.12/ACU-h ({US.sources['aurora']})",
        "cluster ACU unknown (local run): no figure",
    ]
    assert unknown.usd_per_hour_at_this_load is None


ENTRY = {"source": "the test", "as_of": "2026-12-01"}


def price_table(**changes: object) -> dict[str, object]:
    table: dict[str, object] = {
        "lambda_requests_per_million": {"usd": 1.0, **ENTRY},
        "lambda_arm64_gb_second": {"usd": 0.00001, **ENTRY},
        "managed_instances_fee_share": {"share": 0.1, **ENTRY},
        "aurora_serverless_v2_acu_hour": {"usd": 0.1, **ENTRY},
        "rds_proxy_acu_hour": {"usd": 0.01, **ENTRY},
        "ec2_on_demand": {"m8g.large": {"usd_per_hour": 0.1, "vcpus": 1, **ENTRY}},
    }
    table.update(changes)
    return table


def write_prices(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_price_file_in_full(tmp_path: Path) -> None:
    path = write_prices(tmp_path / "p.json", {"regions": {"xx-1": price_table()}})
    prices = load_prices("xx-1", path)
    assert prices.region == "xx-1"
    assert prices.proxy_minimum_acu == 8  # the default when the file gives none
    assert prices.managed_fee_share == 0.1
    assert prices.instances["m8g.large"].vcpus == 1  # one vCPU is a whole number >= 1
    assert prices.instances["m8g.large"].source == "the test, as of 2026-12-01"
    assert prices.sources["fee"] == "the test, as of 2026-12-01"
    four = price_table(rds_proxy_acu_hour={"usd": 0.01, "minimum_acu": 4, **ENTRY})
    write_prices(path, {"regions": {"xx-1": four}})
    assert load_prices("xx-1", path).proxy_minimum_acu == 4


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"regions": {"a": {}, "b": {}}}, "has no region 'xx-1' (it has: a, b)"),
        ({"regions": []}, "has no region 'xx-1' (it has: none)"),
        ([1], "has no region 'xx-1' (it has: none)"),
    ],
)
def test_a_price_file_without_the_region_lists_what_it_has(
    tmp_path: Path, document: object, problem: str
) -> None:
    path = write_prices(tmp_path / "p.json", document)
    with pytest.raises(InputError) as error:
        load_prices("xx-1", path)
    assert str(error.value) == f"price file {path} {problem}"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"lambda_requests_per_million": {"usd": "1", **ENTRY}},
            "lambda_requests_per_million needs a number 'usd'",
        ),
        ({"lambda_arm64_gb_second": 7}, "lambda_arm64_gb_second needs a number 'usd'"),
        (
            {"managed_instances_fee_share": {"usd": 0.1, **ENTRY}},
            "managed_instances_fee_share needs a number 'share'",
        ),
        (
            {"ec2_on_demand": {"m8g.large": {"usd": 0.1, "vcpus": 2, **ENTRY}}},
            "ec2_on_demand.m8g.large needs a number 'usd_per_hour'",
        ),
    ],
)
def test_each_bad_price_is_named_with_its_file_and_region(
    tmp_path: Path, changes: dict[str, object], problem: str
) -> None:
    path = write_prices(tmp_path / "p.json", {"regions": {"xx-1": price_table(**changes)}})
    with pytest.raises(InputError) as error:
        load_prices("xx-1", path)
    default = cost_module.DEFAULT_PRICES
    assert str(error.value) == f"{path} [xx-1]: {problem} (see {default})"


@pytest.mark.parametrize("vcpus", [0, 1.5, "2"])
def test_an_instance_needs_a_whole_number_of_vcpus(tmp_path: Path, vcpus: object) -> None:
    bad = {"m8g.large": {"usd_per_hour": 0.1, "vcpus": vcpus, **ENTRY}}
    path = write_prices(tmp_path / "p.json", {"regions": {"xx-1": price_table(ec2_on_demand=bad)}})
    with pytest.raises(InputError) as error:
        load_prices("xx-1", path)
    assert str(error.value) == (
        f"{path} [xx-1]: ec2_on_demand.m8g.large needs 'vcpus', a whole number >= 1"
    )


def test_an_unreadable_or_malformed_price_file_says_which_and_why(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_prices("xx-1", tmp_path / "none.toml")
    assert str(error.value) == (
        f"cannot read the price file {tmp_path / 'none.toml'}: No such file or directory"
    )
    broken = tmp_path / "p.toml"
    broken.write_text("regions = [", encoding="utf-8")
    with pytest.raises(InputError) as error:
        load_prices("xx-1", broken)
    assert str(error.value).startswith(f"price file {broken} is not valid toml: ")
