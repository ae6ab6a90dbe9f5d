"""Regenerates the README's quoted figures from real runs, so none can go stale unnoticed.

Each block between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->` in README.md is
replaced by what the command below it printed, with the command, the date and the machine,
and, with --runs N > 1, how much the headline figures moved between the N runs.

Usage: uv run python scripts/docs_figures.py [--only seed,failover] [--runs 3] [--check]
  --check: print what would change and exit 1 if anything would (writes nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Run:
    command: list[str]
    seconds: float
    printed: str
    run_dir: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]


def run_poolbench(args: list[str], out: Path) -> Run:
    command = ["poolbench", *args]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "poolbench.cli", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"},
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-500:]}")
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return Run(
        command=command,
        seconds=seconds,
        printed=ANSI.sub("", done.stdout).rstrip(),
        run_dir=run_dir,
        summary=json.loads((run_dir / "summary.json").read_text()),
        manifest=json.loads((run_dir / "manifest.json").read_text()),
    )


def machine() -> str:
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return f"{os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB"


def arm_figures(run: Run) -> dict[str, dict[str, Any]]:
    return {str(a["arm"]): a for a in run.summary["arms"]}


def spread(runs: list[Run], pick: Callable[[Run], float | None], fmt: str) -> str:
    values = [v for v in (pick(r) for r in runs) if v is not None]
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    return fmt.format(low) if low == high else f"{fmt.format(low)} to {fmt.format(high)}"


def seed_block(runs: list[Run]) -> str:
    """The closing table as the first run printed it, then the figures the prose quotes."""
    first = runs[0]
    lines = ["```", "$ " + " ".join(first.command), first.printed, "```", ""]
    lines.append(
        f"Produced by `{' '.join(first.command)}` on {datetime.now(UTC):%Y-%m-%d}"
        f" ({machine()}), {len(runs)} run{'s' if len(runs) > 1 else ''}"
        f"{'; ranges are over the runs' if len(runs) > 1 else ''}"
        " (`uv run python scripts/docs_figures.py` regenerates this block):"
    )
    lines.append(f"- the whole command: {spread(runs, lambda r: r.seconds, '{:.1f}')} s")
    for arm in arm_figures(first):

        def figure(key: str, arm: str = arm) -> Callable[[Run], float | None]:
            return lambda r: arm_figures(r).get(arm, {}).get(key)

        lines.append(
            f"- {arm}: p50 {spread(runs, figure('p50_ms'), '{:,.0f}')} ms,"
            f" p99 {spread(runs, figure('p99_ms'), '{:,.0f}')} ms,"
            f" peak DB connections {spread(runs, figure('peak_db_connections'), '{:.0f}')},"
            f" DB/conc {spread(runs, figure('db_connections_per_concurrent_request'), '{:.2f}')}"
        )
    inits = first.manifest.get("inits") or {}
    for arm, i in inits.items():
        lines.append(
            f"- {arm} execution environment inits: {i.get('count')}, p50 {i.get('p50_ms')} ms,"
            f" max {i.get('max_ms')} ms"
        )
    return "\n".join(lines)


def failover_block(runs: list[Run]) -> str:
    first = runs[0]
    lines = [
        f"`{' '.join(first.command)}`, {datetime.now(UTC):%Y-%m-%d} ({machine()}):",
        "",
        "| arm | failures / requests | recovery |",
        "| --- | --- | --- |",
    ]
    for arm, a in arm_figures(first).items():
        for outcome in a.get("faults") or []:
            recovery = (
                f"{outcome['recovery_s']:g} s"
                if outcome.get("recovery_s") is not None
                else f"none ({outcome.get('reason')})"
            )
            lines.append(
                f"| {arm} | {outcome.get('failures')} / {a.get('requests')} | {recovery} |"
            )
    for fault in first.manifest.get("faults") or []:
        done = "; ".join(f"{k}: {v}" for k, v in (fault.get("done") or {}).items())
        lines.append("")
        lines.append(f"{fault.get('kind')} at {fault.get('at_s')} s: {done}.")
    return "\n".join(lines)


BLOCKS: dict[str, tuple[list[str], Callable[[list[Run]], str]]] = {
    "seed": (["run", "--preset", "seed"], seed_block),
    "failover": (
        ["run", "--preset", "failover", "--arms", "standard,managed,proxy"],
        failover_block,
    ),
}


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(
        rf"(<!-- figures:{name} -->\n).*?(\n<!-- /figures:{name} -->)", flags=re.DOTALL
    )
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- figures:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", default=",".join(BLOCKS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BLOCKS]
    if unknown or args.runs < 1:
        print(f"docs_figures: choose from {', '.join(BLOCKS)}; --runs at least 1", file=sys.stderr)
        return 2
    text = README.read_text()
    updated = text
    for name in names:
        argv, render = BLOCKS[name]
        runs = []
        for n in range(args.runs):
            print(f"docs_figures: {name} run {n + 1}/{args.runs} ...", file=sys.stderr)
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(run_poolbench(argv, Path(tmp)))
        updated = replace_block(updated, name, render(runs))
    if args.check:
        changed = updated != text
        print("README.md figures would change" if changed else "README.md figures are current")
        return 1 if changed else 0
    README.write_text(updated)
    print(f"docs_figures: rewrote {', '.join(names)} in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
