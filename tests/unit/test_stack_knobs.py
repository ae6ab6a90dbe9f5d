"""The local stack's knobs as `run` settles them: the preset's knobs where the user gave none,
and max_connections never changed behind the user's back."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.presets import resolve_scenario
from poolbench import stack_options as opt
from poolbench.cli import main
from poolbench.cli_run import local_stack_settings

ARMS = ("standard", "managed")


def settle(
    preset: str, users: int, knobs: opt.StackKnobs, said: list[str], tmp_path: Path
) -> tuple[int, int, float]:
    scenario = resolve_scenario(preset, target_arms=ARMS, users=users)
    stack = local_stack_settings(scenario, preset, tmp_path, knobs, said.append)
    return stack.max_connections, stack.managed.slots_per_ee, stack.managed.target_utilisation


def test_the_presets_own_their_stack_knobs_and_the_user_overrides_them(tmp_path: Path) -> None:
    said: list[str] = []
    default = opt.MANAGED_DEFAULTS

    assert settle("seed", 10, opt.StackKnobs(), said, tmp_path)[1:] == (64, 0.7)
    assert settle("failover", 10, opt.StackKnobs(), said, tmp_path)[1:] == (64, 0.7)
    assert settle("ramp", 10, opt.StackKnobs(), said, tmp_path)[1:] == (default.slots_per_ee, 0.5)
    assert settle("smoke", 4, opt.StackKnobs(), said, tmp_path)[1:] == (16, 0.7)
    mine = opt.StackKnobs(slots_per_ee=8, target_utilisation=0.9)
    assert settle("seed", 10, mine, said, tmp_path)[1:] == (8, 0.9)
    assert said == []


def test_a_load_beyond_the_default_max_connections_raises_it_and_says_so(
    tmp_path: Path,
) -> None:
    said: list[str] = []

    # 1,000 users x 2 arms need 2 x 2,000 + 50 connections: above the default 2,000
    max_connections, _, _ = settle("smoke", 1000, opt.StackKnobs(), said, tmp_path)

    assert max_connections == 4050
    assert said == [
        "max_connections 4,050, not the default 2,000: --users 1,000 x 2 arms"
        " (2 connections per user + 50) need it"
    ]


def test_a_max_connections_the_user_gave_is_kept_when_it_is_enough(tmp_path: Path) -> None:
    said: list[str] = []

    assert settle("smoke", 4, opt.StackKnobs(max_connections=100), said, tmp_path)[0] == 100
    assert settle("smoke", 4, opt.StackKnobs(max_connections=5000), said, tmp_path)[0] == 5000
    assert said == []


def test_a_max_connections_below_the_load_is_refused_with_the_value_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "--users", "100", "--max-connections", "300", "--out", str(tmp_path / "out")]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        "poolbench: error: --max-connections 300 is below the 450 that --users 100 x 2 arms"
        " (2 connections per user + 50) need: give --max-connections 450 or more, or fewer"
        " --users"
    )
    assert not (tmp_path / "out").exists()
