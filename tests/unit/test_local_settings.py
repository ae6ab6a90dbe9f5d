"""local/settings.py: every knob's rule at its boundary, with the message that names the knob."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from functions.contract import ARMS
from input_errors import InputError
from local.settings import (
    ManagedSettings,
    PoolerSettings,
    ProxySettings,
    StackSettings,
    StandardSettings,
    check_runtime,
)

BASE = StackSettings(run_dir=Path("/run"))


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = StackSettings(run_dir=Path("run"), samples_file=Path("s.jsonl"))
    assert settings.run_dir == tmp_path / "run"
    assert settings.samples_file == tmp_path / "s.jsonl"
    assert StackSettings(run_dir=Path("run")).samples_file is None


def test_the_defaults_pass_and_validate_returns_the_settings() -> None:
    assert BASE.validate() is BASE
    edge = replace(
        BASE,
        arms=("proxy",),
        managed=ManagedSettings(
            slots_per_ee=1, min_ees=1, max_ees=1, target_utilisation=1.0, scale_delay_s=0.0
        ),
        standard=StandardSettings(concurrency_limit=1, idle_timeout_s=0.001),
        pooler=PoolerSettings(default_pool_size=1),
        proxy=ProxySettings(pool_size=1),
        max_connections=10,
        sample_interval_s=0.001,
        init_slots_per_core=1,
    )
    assert edge.validate() is edge


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arms": ("standard", "lmi")}, f"unknown arm 'lmi': choose from {', '.join(ARMS)}"),
        ({"arms": ()}, f"no arms: give --arms standard,managed (or any of {','.join(ARMS)})"),
        ({"arms": ("managed", "managed")}, "an arm is named twice in --arms"),
        ({"managed": ManagedSettings(slots_per_ee=0)}, "--slots-per-ee must be at least 1"),
        ({"managed": ManagedSettings(min_ees=0)}, "--min-ees must be at least 1"),
        (
            {"managed": ManagedSettings(min_ees=4, max_ees=3)},
            "--min-ees 4 is above --max-ees 3",
        ),
        (
            {"managed": ManagedSettings(target_utilisation=0.0)},
            "--target-utilisation must be in (0, 1]",
        ),
        (
            {"managed": ManagedSettings(target_utilisation=1.01)},
            "--target-utilisation must be in (0, 1]",
        ),
        ({"managed": ManagedSettings(scale_delay_s=-0.1)}, "--scale-delay must not be negative"),
        (
            {"standard": StandardSettings(concurrency_limit=0)},
            "--concurrency-limit must be at least 1",
        ),
        ({"standard": StandardSettings(idle_timeout_s=0.0)}, "--idle-timeout must be positive"),
        ({"pooler": PoolerSettings(default_pool_size=0)}, "--pool-size must be at least 1"),
        ({"proxy": ProxySettings(pool_size=0)}, "--proxy-pool-size must be at least 1"),
        ({"max_connections": 9}, "--max-connections must be at least 10"),
        ({"sample_interval_s": 0.0}, "the sample interval must be positive"),
        ({"init_slots_per_core": 0}, "init slots per core must be at least 1"),
    ],
)
def test_each_rule_refuses_just_past_its_boundary(change: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as error:
        replace(BASE, **change).validate()  # type: ignore[arg-type]
    assert str(error.value) == message


def test_a_runtime_is_checked_by_name_with_the_flag_that_gave_it() -> None:
    assert check_runtime("nodejs") == "nodejs"
    with pytest.raises(InputError) as error:
        check_runtime("ruby")
    assert str(error.value) == "unknown --runtime 'ruby': choose python or nodejs"
    with pytest.raises(InputError) as error:
        check_runtime("ruby", "-c runtime")
    assert str(error.value).startswith("unknown -c runtime 'ruby'")
