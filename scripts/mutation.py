"""Mutation testing: do the tests fail when the code is wrong? (issue 19, item 8; not CI: slow)

Two parts, both run by `scripts/mutation`:

- mutmut over the pure modules ([tool.mutmut] in pyproject.toml) with the fast unit subset. It
  prints the score (killed / all mutants) and checks that every surviving mutant has its line in
  docs/mutation.md saying why it is equivalent; it fails under 90 % or on an unexplained survivor.
- the hand-made mutations of scripts/handmade_mutations.toml, for the process-level claims
  mutmut cannot reach: each is applied in a throw-away copy of the tree (tracked and untracked
  files, its own venv), its one test runs there, first unmutated (it must pass) then mutated (it
  must fail). The real tree is never touched; the copy is deleted afterwards.

Usage: scripts/mutation [--part mutmut|handmade|all] [--children N] [--fresh] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDMADE = ROOT / "scripts" / "handmade_mutations.toml"
JUSTIFIED = ROOT / "docs" / "mutation.md"
MIN_SCORE = 0.90
CAUGHT = frozenset({"killed", "timeout", "caught by type check"})
UNFINISHED = frozenset({"not checked", "check was interrupted by user"})
RESULT_LINE = re.compile(r"^\s+(\S+): (.+)$")
JUSTIFIED_LINE = re.compile(r"^- `(?P<name>[^`]+)`: (?P<why>\S.*)$")


@dataclass(frozen=True)
class Mutation:
    """One hand-made break: `find` (exactly once in `file`) becomes `replace`; `test` must fail,
    and when `expect` is given, fail saying one of them (a catch for another reason does not
    count)."""

    claim: str
    file: str
    find: str
    replace: str
    test: str
    expect: tuple[str, ...] = ()


def load_handmade(path: Path = HANDMADE) -> list[Mutation]:
    """The hand-made mutations, in file order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [
        Mutation(**{**entry, "expect": tuple(entry.get("expect", ()))})
        for entry in data["mutation"]
    ]


def apply(mutation: Mutation, root: Path) -> str:
    """Writes the mutated file under `root`; returns the original text (to put back)."""
    target = root / mutation.file
    original = target.read_text(encoding="utf-8")
    count = original.count(mutation.find)
    if count != 1:
        raise ValueError(f"{mutation.file}: the text to replace occurs {count} times, not once")
    target.write_text(original.replace(mutation.find, mutation.replace), encoding="utf-8")
    return original


def parse_results(text: str) -> dict[str, str]:
    """`mutmut results --all true` output -> mutant name -> status."""
    found = {}
    for line in text.splitlines():
        match = RESULT_LINE.match(line)
        if match:
            found[match[1]] = match[2].strip()
    return found


def justified(path: Path = JUSTIFIED) -> dict[str, str]:
    """The survivors docs/mutation.md explains: `- \\`name\\`: why` lines."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = JUSTIFIED_LINE.match(line)
        if match:
            out[match["name"]] = match["why"]
    return out


@dataclass(frozen=True)
class Score:
    total: int
    caught: int
    by_status: dict[str, int]
    survivors: list[str]
    """Tested and not caught (survived, no tests, suspicious): each needs a reason."""
    unfinished: list[str]
    """Not tested yet (an interrupted run): the score is not final while any is left."""

    @property
    def ratio(self) -> float:
        return self.caught / self.total if self.total else 0.0


def score(results: dict[str, str]) -> Score:
    """Caught (killed, timed out) over every mutant; the rest are survivors to explain."""
    by_status = Counter(results.values())
    return Score(
        total=len(results),
        caught=sum(by_status[s] for s in CAUGHT),
        by_status=dict(by_status),
        survivors=sorted(n for n, s in results.items() if s not in CAUGHT and s not in UNFINISHED),
        unfinished=sorted(n for n, s in results.items() if s in UNFINISHED),
    )


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    return found


MUTMUT = (_uv(), "run", "--frozen", "--group", "mutation", "mutmut")


def _mutmut_run(children: int, names: list[str]) -> bool:
    env = dict(os.environ)
    # pytest's numbered temp folders under the shared /tmp are pruned by other sessions' pytest
    # runs; a private TMPDIR keeps them ours.
    private_tmp = Path(tempfile.mkdtemp(prefix="poolbench-mutmut-"))
    env["TMPDIR"] = str(private_tmp)
    try:
        run = subprocess.run(
            [*MUTMUT, "run", "--max-children", str(children), *names],
            cwd=ROOT,
            env=env,
            check=False,
        )
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)
    if run.returncode != 0:
        print(f"mutation: mutmut run exited {run.returncode}", file=sys.stderr)
    return run.returncode == 0


def _results() -> dict[str, str]:
    listed = subprocess.run(
        [*MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return parse_results(listed.stdout)


def refresh_copies(root: Path = ROOT) -> int:
    """Bring mutants/ up to date with the tree for every file mutmut does not mutate.

    mutmut 3.8 copies `source_paths` into mutants/ once and skips files already there, so a
    script, a data file or an unmutated module changed since (a merge) would stay stale there
    and the tests would run against the old one. Returns how many files were refreshed or
    removed."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    mutated = set(config["only_mutate"])
    copy = root / "mutants"
    if not copy.is_dir():
        return 0
    changed = 0
    copied = [*config["source_paths"], "tests", *config.get("also_copy", [])]
    for source in (c for c in copied if (root / c).is_dir()):
        real = {p.relative_to(root) for p in (root / source).rglob("*") if p.is_file()}
        real = {p for p in real if "__pycache__" not in p.parts and "node_modules" not in p.parts}
        for rel in sorted(real):
            if str(rel) in mutated:
                continue
            target = copy / rel
            if not target.is_file() or target.read_bytes() != (root / rel).read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, target)
                changed += 1
        for stale in (copy / source).rglob("*"):
            rel = stale.relative_to(copy)
            artifact = stale.suffix in (".meta", ".spans") or "__pycache__" in rel.parts
            artifact = artifact or "node_modules" in rel.parts
            if stale.is_file() and rel not in real and not artifact:
                stale.unlink()
                changed += 1
    # The project's Node (node_modules/, outside the source paths) is linked, not copied; a
    # function's own node_modules inside them mutmut copies with the rest.
    modules, link = root / "node_modules", copy / "node_modules"
    if modules.is_dir() and not link.exists():
        link.symlink_to(modules, target_is_directory=True)
        changed += 1
    return changed


def run_mutmut(children: int, names: list[str], *, fresh: bool) -> int:
    """mutmut run, then the score and the survivors check.

    mutmut keeps each mutant's result in mutants/ and re-tests only mutants whose code changed,
    so a survivor killed by a test written since would still count as one: survivors are
    re-tested by name (with the tests as they are now) before the score is taken."""
    if fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    refreshed = refresh_copies()
    if refreshed:
        print(f"mutation: {refreshed} unmutated files in mutants/ brought up to date")
    # mutmut maps each test to the functions it reached when it first saw the test; a function
    # added since (a merge) would map to none of the older tests and its mutants would survive
    # untested. Its results stay; the map is rebuilt on every run (a minute or two).
    (ROOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    if not _mutmut_run(children, names):
        return 1
    results = _results()
    if not names:
        again = score(results).survivors
        if again:
            print(f"mutation: re-testing the {len(again)} survivors with the current tests")
            if not _mutmut_run(children, again):
                return 1
            results = _results()
    result = score(results)
    explained = justified()
    per_file: Counter[str] = Counter()
    caught_per_file: Counter[str] = Counter()
    for name, status in results.items():
        module = name.split(".x")[0]
        per_file[module] += 1
        caught_per_file[module] += status in CAUGHT
    print("\nmutmut, per module (caught / mutants):")
    for module in sorted(per_file):
        print(f"  {module:22} {caught_per_file[module]:5} / {per_file[module]:5}")
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(result.by_status.items()))
    print(
        f"score: {result.caught} of {result.total} mutants caught = {result.ratio:.1%} ({statuses})"
    )
    unexplained = [name for name in result.survivors if name not in explained]
    stale = sorted(set(explained) - set(result.survivors))
    for name in unexplained:
        print(f"  survivor without a reason in {JUSTIFIED.name}: {name} ({results[name]})")
    for name in stale:
        print(f"  {JUSTIFIED.name} explains {name}, which is no longer a survivor")
    if result.unfinished:
        print(f"  {len(result.unfinished)} mutants not tested yet (interrupted): run it again")
    ok = result.ratio >= MIN_SCORE and not unexplained and not result.unfinished
    if not ok:
        print(f"mutation: FAILED (needs >= {MIN_SCORE:.0%} and a reason for every survivor)")
    return 0 if ok else 1


def copy_tree(dest: Path) -> None:
    """Tracked and untracked (not ignored) files: the tree as it is, uncommitted edits too."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_test(clone: Path, test: str) -> tuple[int, str]:
    """The test's exit code and everything it printed."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    command = [_uv(), "run", "--frozen", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    command += [f"--basetemp={clone / '.pytest-tmp'}", test]
    done = subprocess.run(command, cwd=clone, env=env, check=False, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def _failures(output: str) -> str:
    """The lines of a pytest run that say why it failed (E lines, errors, the summary)."""
    keep = [
        line
        for line in output.splitlines()
        if line.startswith(("E ", "FAILED", "ERROR", ">")) or " passed" in line or " failed" in line
    ]
    return "\n".join(keep[-40:])


def verdict(mutation: Mutation, code: int, output: str) -> str:
    """caught: the test failed (saying `expect` when given); else what happened instead."""
    if code == 0:
        return "MISSED"
    if mutation.expect and not any(said in output for said in mutation.expect):
        return "FAILED OTHERWISE"
    return "caught"


def run_handmade(mutations: list[Mutation], *, show: bool = False) -> int:
    """Each mutation in a copy of the tree: baseline passes, mutant fails = caught."""
    clone = Path(tempfile.mkdtemp(prefix="poolbench-mutation-"))
    try:
        copy_tree(clone)
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        subprocess.run([_uv(), "sync", "--frozen", "--quiet"], cwd=clone, env=env, check=True)
        baseline: dict[str, int] = {}
        bad = 0
        for mutation in mutations:
            if mutation.test not in baseline:
                code, output = run_test(clone, mutation.test)
                baseline[mutation.test] = code
                if code != 0:
                    print(_failures(output))
            if baseline[mutation.test] != 0:
                print(f"BASELINE FAILS  {mutation.test} (unmutated; fix it first)")
                bad += 1
                continue
            original = apply(mutation, clone)
            try:
                code, output = run_test(clone, mutation.test)
            finally:
                (clone / mutation.file).write_text(original, encoding="utf-8")
            said = verdict(mutation, code, output)
            if said != "caught":
                bad += 1
            if said != "caught" or show:
                print(_failures(output))
            print(f"{said:6}  {mutation.file}: {mutation.claim}\n        by {mutation.test}")
        print(f"hand-made: {len(mutations) - bad} of {len(mutations)} caught")
        return 0 if bad == 0 else 1
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("mutmut", "handmade", "all"), default="all")
    parser.add_argument(
        "--children", type=int, default=1, help="mutmut worker processes (default 1)"
    )
    parser.add_argument(
        "--show", action="store_true", help="hand-made: print why each mutated test failed"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="mutmut: forget every cached result (mutants/)"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="mutmut: these mutant names or globs only (e.g. 'loadtest.budget*')",
    )
    args = parser.parse_args(argv)
    if args.children < 1:
        parser.error(f"--children must be at least 1 (got {args.children})")
    code = 0
    if args.part in ("mutmut", "all"):
        code |= run_mutmut(args.children, args.only, fresh=args.fresh)
    if args.part in ("handmade", "all"):
        code |= run_handmade(load_handmade(), show=args.show)
    return code


if __name__ == "__main__":
    sys.exit(main())
