"""Fixtures for the load tests: one real arm server per module (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.loadtest.harness import ArmServer


@pytest.fixture(scope="module")
def arm_server() -> Iterator[ArmServer]:
    """One server per test module; tests reset it or use distinct arms."""
    server = ArmServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
