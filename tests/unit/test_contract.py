"""The contract module: one definition of every shared name, and each layer reading it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from analysis.cost import DEFAULT_REGION, ArmLoad, Deployment, arm_cost, load_prices
from analysis.summary import ARM_LABELS
from functions import contract
from loadtest.target import parse_arms


def test_every_arm_has_a_locust_user_a_label_and_a_valid_output_key() -> None:
    # The locustfile monkey-patches with gevent on import: read its users in a process of its own
    users = subprocess.run(
        [
            sys.executable,
            "-c",
            "from loadtest.locustfile import ARM_USERS; print(','.join(ARM_USERS))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert set(users.split(",")) == set(contract.ARMS)
    assert set(ARM_LABELS) == set(contract.ARMS)
    for name in contract.ARMS:
        key = contract.function_name_output(name)
        assert key.isalnum() and key.endswith("FunctionName"), key  # a CloudFormation ID
    assert contract.function_name_output("managed-direct") == "ManagedDirectFunctionName"
    assert contract.function_name_output("standard") == "StandardFunctionName"


def test_db_roles_are_plain_identifiers_one_per_arm() -> None:
    roles = [contract.db_role(a) for a in contract.ARMS]
    assert len(set(roles)) == len(roles)
    assert contract.db_role("managed-direct") == "poolbench_managed_direct"
    assert all(r.replace("_", "").isalnum() for r in roles)


def test_the_no_pooler_arms_are_twins_of_the_pooled_ones() -> None:
    direct, managed_direct = contract.arm("direct"), contract.arm("managed-direct")
    assert (direct.managed, direct.has_layer, direct.connects_direct) == (False, False, True)
    assert (managed_direct.managed, managed_direct.has_layer) == (True, False)
    assert contract.arm(direct.twin or "").has_layer
    assert contract.arm(managed_direct.twin or "").managed


def test_pooler_knobs_round_trip_through_the_environment() -> None:
    knobs = contract.PoolerKnobs(default_pool_size=7, server_idle_timeout=30)
    assert contract.PoolerKnobs.from_environment(knobs.environment()) == knobs
    assert contract.PoolerKnobs.from_environment({}) == contract.POOLER_DEFAULTS
    with pytest.raises(ValueError):
        contract.PoolerKnobs.from_environment({contract.ENV_DEFAULT_POOL_SIZE: "lots"})


def test_every_arm_parses_and_gets_the_cost_model_of_its_execution_model() -> None:
    assert parse_arms(",".join(contract.ARMS), where="test") == contract.ARMS
    prices = load_prices(DEFAULT_REGION)

    def cost(arm: str) -> float | None:
        load = ArmLoad(arm, 1000, 60.0, 5000.0, 3)
        return arm_cost(load, Deployment(aurora_acu=1.0), prices).usd_per_million_requests

    # An arm without the in-EE pooler costs what its execution model costs: the pooler is free
    assert cost("direct") == cost("standard") is not None
    assert cost("managed-direct") == cost("managed") is not None
    assert cost("proxy") is not None and cost("proxy") != cost("standard")


def test_cloudwatch_asks_for_managed_instances_metrics_of_every_managed_arm() -> None:
    from analysis.cloudwatch_source import CloudWatchSettings, build_queries

    outputs = {
        "Arms": ",".join(contract.ARMS),
        "CapacityProviderName": "cp",
        **{contract.function_name_output(a): f"fn-{a}" for a in contract.ARMS},
    }
    queries = build_queries(CloudWatchSettings.from_outputs(outputs))
    with_ee_concurrency = {q.arm for q in queries if q.metric == contract.EE_CONCURRENCY}
    assert with_ee_concurrency == {"managed", "managed-direct"}
    assert {q.arm for q in queries if q.metric == contract.INVOCATIONS} == set(contract.ARMS)
