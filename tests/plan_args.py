"""The keyword arguments of `loadtest.plan.make_plan` for a small valid plan, so tests name
only the knob they vary."""

from __future__ import annotations

from typing import Any


def plan_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "outputs_file": None,
        "stack": None,
        "host": "http://h/stage/",
        "arms": "standard,managed",
        "num_users": 4,
        "requests_per_arm": 0,
        "ramp_interval_s": 0.0,
        "ramp_start": 1,
        "run_time_s": None,
        "sleep_ms": 10,
        "queries": 2,
    }
    kwargs.update(overrides)
    return kwargs
