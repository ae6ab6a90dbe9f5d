"""Fixtures shared by the analysis tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.analysis.factory import RunSpec, make_run_folder


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A complete two-arm local run folder (60 s, 40 users), not yet collected."""
    return make_run_folder(tmp_path, RunSpec())
