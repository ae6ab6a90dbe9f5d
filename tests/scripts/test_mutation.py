"""scripts/mutation: its hand-made mutations still apply to the code as it is now, and its score
and survivor bookkeeping count what mutmut reports. (Running mutmut itself is too slow for CI.)"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "scripts/mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_script"] = module
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script()
HANDMADE = SCRIPT.load_handmade()


def write_files(root: Path, files: dict[str, str]) -> None:
    """Each relative path under root, with its text (folders made as needed)."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def test_there_is_a_hand_made_mutation_for_each_process_level_claim() -> None:
    claims = " ".join(m.claim for m in HANDMADE)
    for item in ("(item 1)", "(item 2)", "(item 3)"):
        assert item in claims


@pytest.mark.parametrize("mutation", HANDMADE, ids=lambda m: f"{m.file}:{m.replace.strip()}")
def test_each_hand_made_mutation_applies_once_and_still_compiles(
    mutation: object, tmp_path: Path
) -> None:
    assert isinstance(mutation, SCRIPT.Mutation)
    (tmp_path / mutation.file).parent.mkdir(parents=True)
    (tmp_path / mutation.file).write_bytes((ROOT / mutation.file).read_bytes())
    original = SCRIPT.apply(mutation, tmp_path)
    mutated = (tmp_path / mutation.file).read_text(encoding="utf-8")
    assert original == (ROOT / mutation.file).read_text(encoding="utf-8")
    assert mutated != original
    # a mutant that does not parse would be "caught" by any test: it must be a working program
    ast.parse(mutated, filename=mutation.file)
    # and the test that must catch it exists
    test_file, _, test_name = mutation.test.partition("::")
    source = (ROOT / test_file).read_text(encoding="utf-8")
    assert re.search(rf"^def {re.escape(test_name)}\(", source, re.MULTILINE), mutation.test


def test_a_mutation_whose_text_is_gone_or_ambiguous_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("x = 1\nx = 1\n", encoding="utf-8")
    twice = SCRIPT.Mutation(claim="c", file="m.py", find="x = 1", replace="x = 2", test="t")
    with pytest.raises(ValueError, match="occurs 2 times, not once"):
        SCRIPT.apply(twice, tmp_path)
    gone = SCRIPT.Mutation(claim="c", file="m.py", find="y = 1", replace="y = 2", test="t")
    with pytest.raises(ValueError, match="occurs 0 times, not once"):
        SCRIPT.apply(gone, tmp_path)
    assert (tmp_path / "m.py").read_text(encoding="utf-8") == "x = 1\nx = 1\n"


def test_the_score_counts_killed_and_timeouts_and_lists_the_rest() -> None:
    printed = (
        "    loadtest.budget.x_split_budget__mutmut_1: killed\n"
        "    loadtest.budget.x_split_budget__mutmut_2: survived\n"
        "    loadtest.plan.x_make_plan__mutmut_3: timeout\n"
        "    loadtest.plan.x_make_plan__mutmut_4: no tests\n"
        "    loadtest.plan.xǁLoadPlanǁtotal_users__mutmut_1: killed\n"
        "    loadtest.plan.x_make_plan__mutmut_5: not checked\n"
    )
    results = SCRIPT.parse_results(printed)
    assert len(results) == 6
    result = SCRIPT.score(results)
    assert (result.caught, result.total) == (3, 6)
    assert result.ratio == 0.5
    assert result.unfinished == ["loadtest.plan.x_make_plan__mutmut_5"]
    assert result.survivors == [
        "loadtest.budget.x_split_budget__mutmut_2",
        "loadtest.plan.x_make_plan__mutmut_4",
    ]


def test_every_documented_survivor_line_is_read(tmp_path: Path) -> None:
    doc = tmp_path / "mutation.md"
    doc.write_text(
        "# x\n- `a.b.x_f__mutmut_1`: the message is not part of the contract\n"
        "- not a survivor line\n- `a.b.xǁCǁm__mutmut_2`: equivalent: x or y\n",
        encoding="utf-8",
    )
    assert SCRIPT.justified(doc) == {
        "a.b.x_f__mutmut_1": "the message is not part of the contract",
        "a.b.xǁCǁm__mutmut_2": "equivalent: x or y",
    }
    assert SCRIPT.justified()  # the shipped doc has its lines in that form


def test_mutants_copies_of_unmutated_files_follow_the_tree(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutmut]\nsource_paths = ["pkg"]\nonly_mutate = ["pkg/pure.py"]\n'
        'also_copy = ["docs"]\n',
        encoding="utf-8",
    )
    write_files(
        tmp_path,
        {
            "pkg/pure.py": "x = 1\n",
            "pkg/other.py": "y = 2\n",
            "pkg/build.sh": "new\n",
            "tests/test_a.py": "a\n",
            "docs/d.md": "d\n",
        },
    )
    copy = tmp_path / "mutants"
    write_files(
        copy,
        {
            "pkg/pure.py": "x = 1  # with mutmut's trampolines\n",
            "pkg/pure.py.meta": "{}",
            "pkg/build.sh": "old\n",
            "pkg/gone.py": "z = 3\n",
            "tests/test_gone.py": "g\n",
        },
    )

    assert SCRIPT.refresh_copies(tmp_path) == 6  # build.sh, other.py, test_a, d.md; 2 gone
    assert (copy / "pkg/build.sh").read_text(encoding="utf-8") == "new\n"
    assert (copy / "pkg/other.py").read_text(encoding="utf-8") == "y = 2\n"
    assert (copy / "tests/test_a.py").is_file() and (copy / "docs/d.md").is_file()
    assert not (copy / "pkg/gone.py").exists() and not (copy / "tests/test_gone.py").exists()
    # what mutmut owns is left alone: the mutated module and its results
    assert "trampolines" in (copy / "pkg/pure.py").read_text(encoding="utf-8")
    assert (copy / "pkg/pure.py.meta").is_file()
    assert SCRIPT.refresh_copies(tmp_path) == 0
