"""A pytest plugin for scripts/mutation only (`-p tests.mutmut_order` in [tool.mutmut]).

mutmut runs every test that reaches a mutated function, with `-x`, in no particular order; most
mutants are killed by the first test that fails. Running tests/unit first (milliseconds each)
before the run-folder tests of tests/analysis (a second each) makes a killed mutant cheap."""

from __future__ import annotations

import pytest

FIRST = ("tests/unit/", "tests/loadtest/")


def _rank(item: pytest.Item) -> int:
    path = item.nodeid
    return next((i for i, prefix in enumerate(FIRST) if path.startswith(prefix)), len(FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the file order within each group is kept
