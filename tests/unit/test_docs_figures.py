"""scripts/docs_figures.py: the README's quoted figures are blocks it can regenerate."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "scripts/docs_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_figures"] = module
    spec.loader.exec_module(module)
    return module


def fake_run(module: ModuleType, seconds: float, p99: float) -> object:
    arms = [
        {
            "arm": "standard",
            "p50_ms": 5040.0,
            "p99_ms": p99,
            "peak_db_connections": 100,
            "db_connections_per_concurrent_request": 1.0,
            "requests": 1000,
        },
    ]
    return module.Run(
        command=["poolbench", "run", "--preset", "seed"],
        seconds=seconds,
        printed="the closing table",
        run_dir=Path("/nonexistent"),
        summary={"arms": arms},
        manifest={"inits": {"standard": {"count": 100, "p50_ms": 540.0, "max_ms": 1511.0}}},
    )


def test_every_block_the_script_writes_is_marked_in_the_readme() -> None:
    module = load_script()
    readme = (ROOT / "README.md").read_text()
    for name in module.BLOCKS:
        assert f"<!-- figures:{name} -->" in readme
        assert f"<!-- /figures:{name} -->" in readme


def test_a_block_is_replaced_between_its_markers_only() -> None:
    module = load_script()
    text = "before\n<!-- figures:seed -->\nold\n<!-- /figures:seed -->\nafter\n"

    assert module.replace_block(text, "seed", "new") == (
        "before\n<!-- figures:seed -->\nnew\n<!-- /figures:seed -->\nafter\n"
    )


def test_the_seed_block_names_its_command_date_and_spread() -> None:
    module = load_script()

    block = module.seed_block([fake_run(module, 70.4, 6800.0), fake_run(module, 76.8, 7300.0)])

    assert "$ poolbench run --preset seed" in block
    assert "2 runs; ranges are over the runs" in block
    assert "the whole command: 70.4 to 76.8 s" in block
    assert "p99 6,800 to 7,300 ms" in block
    assert "standard execution environment inits: 100" in block
