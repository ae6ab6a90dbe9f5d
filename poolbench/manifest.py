"""manifest.json: what produced a run folder, written before the load and finished after it.

It is rewritten atomically (tmp + rename) at every status change, so an interrupted run still
leaves a readable manifest that says `interrupted`, next to everything the run had written.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from poolbench import __version__

REPO_ROOT = Path(__file__).resolve().parent.parent


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def host_info() -> dict[str, Any]:
    memory_gib = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages * page_size / 2**30, 1)
    except (OSError, ValueError):
        pass
    return {"cores": os.cpu_count(), "memory_gib": memory_gib, "platform": platform.platform()}


def base_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "locust": metadata.version("locust"),
        "poolbench": __version__,
    }


class Manifest:
    """The run's manifest.json, kept in memory and written through on every change."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def start(
        cls,
        run_dir: Path,
        *,
        target: str,
        scenario: dict[str, Any],
        argv: list[str],
        runtime: str = "python",
    ) -> Manifest:
        data: dict[str, Any] = {
            "poolbench_version": __version__,
            "run_id": run_dir.name,
            "status": "running",
            "phase": "starting",  # then stack start (local), load, collect, report, done
            "target": target,
            "runtime": runtime,
            "command": " ".join(["poolbench", *argv]),
            "started_at": utc_now(),
            "ended_at": None,
            "load_started_at": None,
            "load_ended_at": None,
            "scenario": scenario,
            "stack": {},
            "versions": base_versions(),
            "git_commit": git_commit(),
            "host": host_info(),
            "python_executable": sys.executable,
            "error": None,
        }
        manifest = cls(run_dir / "manifest.json", data)
        manifest.write()
        return manifest

    def update(self, **changes: Any) -> None:
        self.data.update(changes)
        self.write()

    def finish(self, status: str, error: str | None = None) -> None:
        self.update(status=status, ended_at=utc_now(), error=error)

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        tmp.replace(self.path)
