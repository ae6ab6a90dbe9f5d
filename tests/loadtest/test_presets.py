"""Presets, the Locust command line, and their one-line errors (no processes started)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from input_errors import InputError
from loadtest.presets import LOCUSTFILE, PRESETS, locust_command, resolve_scenario

TWO_ARMS = ("standard", "managed")


def test_seed_is_the_articles_experiment() -> None:
    scenario = resolve_scenario("seed", target_arms=TWO_ARMS)
    assert scenario.to_manifest() == {
        "preset": "seed",
        "arms": ["standard", "managed"],
        "users": 100,
        "requests_per_arm": 1000,
        "duration_s": None,
        "spawn_rate": 200.0,  # all users at once
        "sleep_ms": 5000,
        "queries": 2,
        "hold": True,
        "processes": 1,
        "ramp_interval_s": None,
        "ramp_start": 1,
    }
    assert scenario.total_users == 200


def test_seed_command_line_is_exact(tmp_path: Path) -> None:
    scenario = resolve_scenario("seed", target_arms=TWO_ARMS)
    argv = locust_command(scenario, outputs_file=tmp_path / "o.json", run_dir=tmp_path / "run")
    assert argv == [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        "200",
        "-r",
        "200",
        "--outputs-file",
        str(tmp_path / "o.json"),
        "--arms",
        "standard,managed",
        "--sleep-ms",
        "5000",
        "--queries",
        "2",
        "--hold",
        "true",
        "--csv",
        str(tmp_path / "run" / "locust"),
        "--ees-prefix",
        str(tmp_path / "run" / "locust"),
        "--csv-full-history",
        "--requests-dir",
        str(tmp_path / "run" / "requests"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "INFO",
        "--requests-per-arm",
        "1000",
    ]


def test_duration_replaces_the_presets_budget(tmp_path: Path) -> None:
    scenario = resolve_scenario("seed", target_arms=TWO_ARMS, duration_s=30, users=10)
    argv = locust_command(scenario, outputs_file="o.json", run_dir=tmp_path)
    assert (scenario.requests_per_arm, scenario.duration_s) == (None, 30)
    assert argv[argv.index("--run-time") + 1] == "30s"
    assert "--requests-per-arm" not in argv
    assert argv[argv.index("-u") + 1] == "20"


def test_ramp_preset_passes_its_shape(tmp_path: Path) -> None:
    scenario = resolve_scenario("ramp", target_arms=TWO_ARMS)
    argv = locust_command(scenario, outputs_file="o.json", run_dir=tmp_path)
    assert argv[argv.index("--ramp-interval") + 1] == "15"
    assert argv[argv.index("--ramp-start") + 1] == "4"
    assert argv[argv.index("--run-time") + 1] == "90s"


def test_processes_pin_a_master_port(tmp_path: Path) -> None:
    scenario = resolve_scenario("smoke", target_arms=TWO_ARMS, processes=2)
    argv = locust_command(scenario, outputs_file="o.json", run_dir=tmp_path, master_port=15999)
    tail = argv[argv.index("--processes") :]
    assert tail[:8] == [
        "--processes",
        "2",
        "--master-bind-port",
        "15999",
        "--master-bind-host",
        "127.0.0.1",
        "--master-port",
        "15999",
    ]


def test_smoke_finishes_in_seconds() -> None:
    smoke = PRESETS["smoke"]
    assert smoke.requests_per_arm is not None
    # closed loop: requests per user x request time
    assert smoke.requests_per_arm / smoke.users * smoke.sleep_ms / 1000 <= 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "fast"}, "unknown preset 'fast' (valid presets: seed, smoke, failover, ramp)"),
        ({"users": 0}, "--users must be at least 1 (got 0)"),
        (
            {"arms": "standard,lmi"},
            "--arms: unknown arm 'lmi' (valid arms: standard, managed, proxy, direct, "
            "managed-direct)",
        ),
        (
            {"arms": "proxy"},
            "--arms: arm 'proxy' is not in the target (it has: standard, managed)",
        ),
        ({"requests_per_arm": 10, "duration_s": 10}, "give --requests or --duration, not both"),
        ({"requests_per_arm": 0}, "--requests must be at least 1 (got 0)"),
        ({"duration_s": 0}, "--duration must be at least 1 second (got 0)"),
        ({"processes": 0}, "--processes must be at least 1 (got 0)"),
        ({"sleep_ms": -1}, "--sleep-ms must be >= 0 (got -1)"),
        (
            {"preset": "ramp", "requests_per_arm": 100, "processes": 2},
            "a ramp with a request budget needs --processes 1 (the budget is split when all "
            "users have started, which a ramp never does at once)",
        ),
    ],
)
def test_bad_scenarios_are_one_line(kwargs: dict[str, object], message: str) -> None:
    preset = str(kwargs.pop("preset", "seed"))
    with pytest.raises(InputError) as error:
        resolve_scenario(preset, target_arms=TWO_ARMS, **kwargs)  # type: ignore[arg-type]
    assert str(error.value) == message
    assert "\n" not in str(error.value)
