"""The cost model against examples computed by hand (the arithmetic is in each comment)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analysis.cost import (
    ArmLoad,
    Deployment,
    arm_cost,
    aurora_cost,
    load_prices,
    managed_instances,
)
from input_errors import InputError

US = load_prices("us-east-1")
DEP = Deployment()  # 2048 MB, 2 GiB/vCPU -> 1 vCPU per EE, m8g.large, minimum 3 instances


def load(arm: str, ees: float) -> ArmLoad:
    """1000 requests of 5 s mean in 100 s -> 36,000 requests per hour."""
    return ArmLoad(
        arm, requests=1000, load_seconds=100.0, mean_duration_ms=5000.0, execution_environments=ees
    )


def test_shipped_table_has_the_regions_and_the_facts_prices() -> None:
    for region in ("us-east-1", "eu-west-1", "ap-northeast-1"):
        table = load_prices(region)
        assert table.requests_per_million == 0.20
        assert table.arm64_gb_second == 0.0000133334
        assert table.managed_fee_share == 0.15
        assert table.proxy_acu_hour > 0 and table.proxy_minimum_acu == 8
        assert "m8g.large" in table.instances and "m7g.large" in table.instances
        assert all("as of 2026-12-01" in said for said in table.sources.values())
    # us-east-1 agrees with docs/aws.md's cost section
    assert US.instances["m8g.large"].usd_per_hour == 0.08976
    assert US.aurora_acu_hour == 0.12 and US.proxy_acu_hour == 0.015


def test_standard_requests_plus_gb_seconds() -> None:
    cost = arm_cost(load("standard", 100), DEP, US)
    # per million: 0.20 + 5 s x 2 GB x 0.0000133334 x 1e6 = 0.20 + 133.334 = 133.534
    assert cost.usd_per_million_requests == pytest.approx(133.534)
    # per hour: 36,000 / 1e6 x 133.534 = 4.807224
    assert cost.usd_per_hour_at_this_load == pytest.approx(4.807224)
    assert any("0.0000133334/GB-s at 2048 MB" in a for a in cost.assumptions)


def test_managed_instances_at_the_minimum() -> None:
    cost = arm_cost(load("managed", 4), DEP, US)
    # 4 EEs x 1 vCPU / 2 vCPU = 2 instances, below the minimum 3
    # per hour: 3 x 0.08976 x 1.15 + 36,000 x 0.20/1e6 = 0.309672 + 0.0072 = 0.316872
    assert cost.usd_per_hour_at_this_load == pytest.approx(0.316872)
    # per million: 0.316872 / 0.036 = 8.802
    assert cost.usd_per_million_requests == pytest.approx(8.802)


def test_managed_instances_above_the_minimum_round_up() -> None:
    # 7 EEs x 1 vCPU / 2 = 3.5 -> 4; 6 EEs -> exactly 3; 8 EEs of 4096 MB (2 vCPU) -> 8
    assert managed_instances(7, DEP, 2) == 4
    assert managed_instances(6, DEP, 2) == 3
    assert managed_instances(8, Deployment(memory_mb=4096), 2) == 8
    assert managed_instances(0, DEP, 2) == 3
    cost = arm_cost(load("managed", 7), DEP, US)
    # 4 x 0.08976 x 1.15 + 0.0072 = 0.412896 + 0.0072 = 0.420096
    assert cost.usd_per_hour_at_this_load == pytest.approx(0.420096)


def test_proxy_is_standard_plus_at_least_eight_acu() -> None:
    cost = arm_cost(load("proxy", 100), DEP, US)
    # 4.807224 + 8 ACU x 0.015 = 4.807224 + 0.12 = 4.927224
    assert cost.usd_per_hour_at_this_load == pytest.approx(4.927224)
    # a cluster at 16 ACU bills 16, not 8: 4.807224 + 0.24
    big = arm_cost(load("proxy", 100), Deployment(aurora_acu=16), US)
    assert big.usd_per_hour_at_this_load == pytest.approx(5.047224)


def test_aurora_apart() -> None:
    assert aurora_cost(Deployment(aurora_acu=4), US).usd_per_hour_at_this_load == pytest.approx(
        0.48
    )
    assert aurora_cost(DEP, US).usd_per_hour_at_this_load is None


def test_prices_override_json(tmp_path: Path) -> None:
    entry = {"source": "my contract", "as_of": "2026-11-30"}
    table: dict[str, Any] = {
        "lambda_requests_per_million": {"usd": 1.0, **entry},
        "lambda_arm64_gb_second": {"usd": 0.00001, **entry},
        "managed_instances_fee_share": {"share": 0.0, **entry},
        "aurora_serverless_v2_acu_hour": {"usd": 0.1, **entry},
        "rds_proxy_acu_hour": {"usd": 0.01, "minimum_acu": 8, **entry},
        "ec2_on_demand": {"m8g.large": {"usd_per_hour": 0.1, "vcpus": 2, **entry}},
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"regions": {"xx-test-1": table}}))
    prices = load_prices("xx-test-1", path)
    cost = arm_cost(load("managed", 3), DEP, prices)
    # 3 x 0.1 x 1.0 + 36,000 x 1.0/1e6 = 0.3 + 0.036
    assert cost.usd_per_hour_at_this_load == pytest.approx(0.336)
    with pytest.raises(InputError, match="no region 'us-east-1'"):
        load_prices("us-east-1", path)
    del table["rds_proxy_acu_hour"]["source"]
    path.write_text(json.dumps({"regions": {"xx-test-1": table}}))
    with pytest.raises(InputError, match="needs 'source' and 'as_of'"):
        load_prices("xx-test-1", path)
