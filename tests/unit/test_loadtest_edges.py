"""The edges of the budget split, the Locust plan and the outputs-file reader: each case here was
a mutant (scripts/mutation) that the broader tests in tests/loadtest let through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.contract import ARMS
from input_errors import InputError
from loadtest.budget import ArmBudget, split_budget
from loadtest.plan import make_plan, ramp_users_per_arm
from loadtest.target import arm_url, load_target, select_arms
from tests.plan_args import plan_kwargs


def test_split_budget_gives_the_spare_to_the_largest_remainder_not_the_first_index() -> None:
    # 20 x 2/3 = 13.33 (.33 left), 20 x 1/3 = 6.67 (.67 left): the spare 1 goes to index 1
    assert split_budget(20, [2, 1]) == [13, 7]
    assert split_budget(7, [1, 5, 1]) == [1, 5, 1]  # 1, 5, 1 exact: nothing spare


@pytest.mark.parametrize(
    ("total", "weights", "message"),
    [
        (-1, [1], "total must be >= 0, got -1"),
        (5, [1, -2], "weights must be >= 0, got [1, -2]"),
        (3, [0, 0], "cannot split a budget over zero weights"),
    ],
)
def test_split_budget_refuses_nonsense_with_the_value(
    total: int, weights: list[int], message: str
) -> None:
    with pytest.raises(ValueError) as error:
        split_budget(total, weights)
    assert str(error.value) == message


def test_a_budget_before_its_assignment_is_unassigned_and_counts_nothing() -> None:
    budget = ArmBudget()
    assert not budget.assigned
    assert budget.shares == {}
    budget.complete("standard")  # a completion before the master's shares is ignored
    assert not budget.done
    assert not budget.report_done_once()
    budget.assign({"standard": 1})
    assert budget.assigned
    assert budget.shares == {"standard": 1}
    assert not budget.done  # the early completion did not count


def test_assign_refuses_a_negative_share_and_restarts_the_count() -> None:
    budget = ArmBudget()
    with pytest.raises(ValueError) as error:
        budget.assign({"standard": -1})
    assert str(error.value) == "shares must be >= 0, got {'standard': -1}"
    budget.assign({"standard": 1})
    assert budget.take("standard")
    budget.complete("standard")
    assert budget.report_done_once()
    budget.assign({"standard": 1})  # a new budget: not done, and reported again when it is
    assert not budget.done
    assert budget.take("standard")
    budget.complete("standard")
    assert budget.report_done_once()
    assert not budget.report_done_once()
    budget.assign({})  # an empty budget is done at once
    assert budget.done


def test_ramp_refuses_a_zero_interval_and_accepts_a_short_one() -> None:
    with pytest.raises(ValueError) as error:
        ramp_users_per_arm(1.0, start=1, target=4, interval_s=0)
    assert str(error.value) == "interval_s must be > 0, got 0"
    # an interval below 1 s is a real interval: 0.5 s in, one doubling
    assert ramp_users_per_arm(0.5, start=1, target=4, interval_s=0.5) == 2
    assert ramp_users_per_arm(-3.0, start=1, target=4, interval_s=0.5) == 1  # clock skew
    assert ramp_users_per_arm(0.9, start=1, target=4, interval_s=2.0) == 1


def test_ramp_stops_doubling_at_the_target() -> None:
    # from 3 users: 6 at one interval; with target 6 it stays 6 even at many intervals
    assert ramp_users_per_arm(10.0, start=3, target=6, interval_s=1.0) == 6
    assert ramp_users_per_arm(1.5, start=3, target=6, interval_s=1.0) == 6
    assert ramp_users_per_arm(2.0, start=3, target=5, interval_s=1.0) == 5


def _outputs(tmp_path: Path) -> Path:
    file = tmp_path / "outputs.json"
    document = {
        "A": {"ApiUrl": "http://a/prod/", "Arms": "standard"},
        "B": {"ApiUrl": "http://b/prod/", "Arms": "standard,managed,proxy"},
    }
    file.write_text(json.dumps(document), encoding="utf-8")
    return file


def test_plan_from_an_outputs_file_picks_the_stack_and_narrows_its_arms(tmp_path: Path) -> None:
    file = _outputs(tmp_path)
    plan = make_plan(
        **plan_kwargs(outputs_file=str(file), stack="B", host=None, arms="proxy,managed")
    )
    assert plan.base_url == "http://b/prod"
    assert plan.arms == ("proxy", "managed")
    assert plan.users_per_arm == 2
    every = make_plan(
        **plan_kwargs(outputs_file=str(file), stack="B", host=None, arms=None, num_users=3)
    )
    assert every.arms == ("standard", "managed", "proxy")
    # --host beats the file's ApiUrl
    moved = make_plan(**plan_kwargs(outputs_file=str(file), stack="A", arms=None, num_users=1))
    assert moved.base_url == "http://h/stage"


def test_plan_names_the_option_that_picked_a_missing_arm(tmp_path: Path) -> None:
    file = _outputs(tmp_path)
    with pytest.raises(InputError) as error:
        make_plan(**plan_kwargs(outputs_file=str(file), stack="A", host=None, arms="managed"))
    assert str(error.value) == "--arms: arm 'managed' is not in the target (it has: standard)"
    with pytest.raises(InputError) as error:
        make_plan(**plan_kwargs(arms="standard,lmi"))
    assert str(error.value).startswith("--arms: unknown arm 'lmi'")


def test_plan_carries_every_knob_through() -> None:
    plan = make_plan(
        **plan_kwargs(
            num_users=6,
            arms="standard,managed,proxy",
            requests_per_arm=3,
            ramp_interval_s=0.5,
            ramp_start=2,
            run_time_s=60,
            host="http://h//",
        )
    )
    assert plan.base_url == "http://h"
    assert make_plan(**plan_kwargs(host="http://hostX/")).base_url == "http://hostX"  # only slashes
    assert plan.ramp_interval_s == 0.5
    assert plan.ramp_start == 2
    assert plan.run_time_s == 60
    assert plan.requests_per_arm == 3
    assert plan.total_users == 6
    # a ramp may start at 1 and at every user of the arm
    assert make_plan(**plan_kwargs(ramp_interval_s=1.0, ramp_start=1)).ramp_start == 1
    assert make_plan(**plan_kwargs(ramp_interval_s=1.0, ramp_start=2)).ramp_start == 2
    # without a ramp, --ramp-start is not checked
    assert make_plan(**plan_kwargs(ramp_interval_s=0.0, ramp_start=9)).ramp_interval_s is None


def test_plan_accepts_the_smallest_valid_values() -> None:
    plan = make_plan(**plan_kwargs(arms="standard", num_users=1, sleep_ms=0, queries=0))
    assert (plan.users_per_arm, plan.arms) == (1, ("standard",))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_users": 0}, "-u must be at least 1 (got 0); it is users per arm x 2 arms"),
        ({"ramp_interval_s": -1.0}, "--ramp-interval must be >= 0 (got -1.0; 0 = no ramp)"),
        (
            {"ramp_interval_s": 1.0, "ramp_start": 0},
            "--ramp-start must be between 1 and the 2 users per arm (got 0)",
        ),
        ({"sleep_ms": -1}, "--sleep-ms must be >= 0 (got -1)"),
        ({"queries": -1}, "--queries must be >= 0 (got -1)"),
        ({"arms": None}, "give --outputs-file F (or --host URL together with --arms)"),
    ],
)
def test_plan_refusals_name_the_option_and_the_value(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError) as error:
        make_plan(**plan_kwargs(**overrides))
    assert str(error.value) == message


def test_arm_url_strips_only_slashes() -> None:
    assert arm_url("http://h/X/", "standard") == "http://h/X/standard"
    assert arm_url("http://hXX//", "managed") == "http://hXX/managed"


def test_select_arms_keeps_the_target_s_arms_or_narrows_them_in_order() -> None:
    available = ("standard", "managed", "proxy")
    assert select_arms(available, None, where="w") == available
    assert select_arms(available, "", where="w") == available
    assert select_arms(available, "proxy, standard", where="w") == ("proxy", "standard")
    with pytest.raises(InputError) as error:
        select_arms(("standard", "managed"), "standard,proxy", where="--arms")
    assert str(error.value) == (
        "--arms: arm 'proxy' is not in the target (it has: standard, managed)"
    )
    with pytest.raises(InputError) as error:
        select_arms(available, "managed,managed", where="X")
    assert str(error.value) == "X: an arm is listed twice in 'managed,managed'"
    with pytest.raises(InputError) as error:
        select_arms(available, " , ", where="X")
    assert str(error.value) == "X: no arms given"
    with pytest.raises(InputError) as error:
        select_arms(available, "nope", where="X")
    assert str(error.value) == f"X: unknown arm 'nope' (valid arms: {', '.join(ARMS)})"


def test_an_outputs_file_in_utf8_with_a_non_ascii_stack_name(tmp_path: Path) -> None:
    file = tmp_path / "o.json"
    outputs = {"ApiUrl": " https://h/ ", "Arms": "standard", "Note": "größe"}
    file.write_bytes(json.dumps({"Pöolbench": outputs}, ensure_ascii=False).encode("utf-8"))
    target = load_target(file)
    assert target.stack == "Pöolbench"
    assert target.api_url == "https://h/"
    assert target.outputs["Note"] == "größe"
    assert target.path == file


def test_an_unreadable_outputs_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_target(tmp_path)  # a directory: read_text raises IsADirectoryError
    assert str(error.value) == f"outputs file {tmp_path}: cannot be read (Is a directory)"


def test_a_missing_stack_lists_every_stack_the_file_has(tmp_path: Path) -> None:
    file = _outputs(tmp_path)
    with pytest.raises(InputError) as error:
        load_target(file, "C")
    assert str(error.value) == f"outputs file {file}: no stack 'C' (it has: A, B)"
