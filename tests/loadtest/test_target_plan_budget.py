"""The outputs-file reader, the locustfile's option checks, the budget split and the ramp pace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from input_errors import InputError
from loadtest.budget import ArmBudget, split_budget
from loadtest.plan import make_plan, ramp_users_per_arm
from loadtest.target import arm_url, load_target
from tests.plan_args import plan_kwargs


def _write(path: Path, document: object) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document), "utf-8")
    return path


def test_outputs_file_gives_a_typed_target(tmp_path: Path) -> None:
    outputs = {"ApiUrl": "https://x.example/prod/", "Arms": "standard, managed", "Region": "r"}
    file = _write(tmp_path / "o.json", {"PoolbenchStack": outputs})
    target = load_target(file)
    assert target.stack == "PoolbenchStack"
    assert target.api_url == "https://x.example/prod/"
    assert target.arms == ("standard", "managed")
    assert target.outputs["Region"] == "r"
    assert target.arm_url("managed") == "https://x.example/prod/managed"
    assert arm_url("http://h:1", "proxy") == "http://h:1/proxy"


def test_stack_picks_one_of_several(tmp_path: Path) -> None:
    one = {"ApiUrl": "http://a/", "Arms": "standard"}
    two = {"ApiUrl": "http://b/", "Arms": "managed"}
    file = _write(tmp_path / "o.json", {"A": one, "B": two})
    assert load_target(file, "B").api_url == "http://b/"


@pytest.mark.parametrize(
    ("document", "stack", "problem"),
    [
        (
            "{not json",
            None,
            "not valid JSON (line 1: Expecting property name enclosed in double quotes)",
        ),
        ([1, 2], None, "expected an object with one stack name as its key"),
        ({}, None, "expected an object with one stack name as its key"),
        ({"A": {}, "B": {}}, None, "several stacks (A, B); name one with --stack"),
        ({"A": {}}, "C", "no stack 'C' (it has: A)"),
        ({"A": "x"}, None, "stack 'A' is not an object of outputs"),
        ({"A": {"Arms": "standard"}}, None, "stack 'A' has no ApiUrl"),
        ({"A": {"ApiUrl": "http://h/"}}, None, "stack 'A' has no Arms"),
        ({"A": {"ApiUrl": "h:1", "Arms": "standard"}}, None, "ApiUrl 'h:1' is not an http(s) URL"),
    ],
)
def test_malformed_outputs_files_are_one_line(
    tmp_path: Path, document: object, stack: str | None, problem: str
) -> None:
    file = _write(tmp_path / "o.json", document)
    with pytest.raises(InputError) as error:
        load_target(file, stack)
    assert str(error.value) == f"outputs file {file}: {problem}"


def test_unknown_arm_in_outputs_file(tmp_path: Path) -> None:
    file = _write(tmp_path / "o.json", {"A": {"ApiUrl": "http://h/", "Arms": "standard,lmi"}})
    with pytest.raises(InputError) as error:
        load_target(file)
    assert str(error.value) == (
        f"outputs file {file}: Arms: unknown arm 'lmi' (valid arms: "
        "standard, managed, proxy, direct, managed-direct)"
    )


def test_missing_outputs_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_target(tmp_path / "nope.json")
    assert str(error.value) == f"outputs file {tmp_path / 'nope.json'}: not found"


def test_plan_from_host_and_arms() -> None:
    plan = make_plan(**plan_kwargs(requests_per_arm=7))
    assert (plan.base_url, plan.arms, plan.users_per_arm) == (
        "http://h/stage",
        ("standard", "managed"),
        2,
    )
    assert plan.requests_per_arm == 7
    assert plan.ramp_interval_s is None
    assert plan.total_users == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"host": None}, "give --outputs-file F (or --host URL together with --arms)"),
        ({"num_users": None}, "-u must be at least 1 (got None); it is users per arm x 2 arms"),
        (
            {"num_users": 3},
            "-u 3 is not a multiple of the 2 arms (standard, managed): "
            "every arm gets the same number of users",
        ),
        ({"requests_per_arm": -1}, "--requests-per-arm must be >= 0 (got -1; 0 = no budget)"),
        (
            {"ramp_interval_s": 1.0, "ramp_start": 3},
            "--ramp-start must be between 1 and the 2 users per arm (got 3)",
        ),
    ],
)
def test_plan_errors_are_one_line(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as error:
        make_plan(**plan_kwargs(**overrides))
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (20, [3, 0], [20, 0]),
        (20, [1, 2], [7, 13]),  # 6.67 -> 6 (.67 left), 13.33 -> 13 (.33): the spare 1 to index 0
        (10, [1, 1, 1], [4, 3, 3]),  # equal remainders: lower index first
        (1000, [50, 50], [500, 500]),
        (0, [0, 0], [0, 0]),
        (2, [1, 1, 1], [1, 1, 0]),
    ],
)
def test_split_budget_by_hand(total: int, weights: list[int], shares: list[int]) -> None:
    assert split_budget(total, weights) == shares


def test_arm_budget_counts_tickets_and_completions() -> None:
    budget = ArmBudget()
    assert not budget.take("standard")  # nothing assigned yet: workers wait for a share
    budget.assign({"standard": 2, "managed": 0})
    assert [budget.take("standard") for _ in range(3)] == [True, True, False]
    assert not budget.take("managed")
    budget.complete("standard")
    assert not budget.done
    budget.complete("standard")
    assert budget.done
    assert budget.report_done_once()
    assert not budget.report_done_once()


@pytest.mark.parametrize(
    ("elapsed", "users"),
    [(0.0, 1), (1.99, 1), (2.0, 2), (3.9, 2), (4.0, 4), (6.0, 5), (100.0, 5)],
)
def test_ramp_doubles_per_interval_up_to_target(elapsed: float, users: int) -> None:
    assert ramp_users_per_arm(elapsed, start=1, target=5, interval_s=2.0) == users


def test_ramp_preset_reaches_100_after_five_intervals() -> None:
    steps = [ramp_users_per_arm(15.0 * k, start=4, target=100, interval_s=15.0) for k in range(7)]
    assert steps == [4, 8, 16, 32, 64, 100, 100]
