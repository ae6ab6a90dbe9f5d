"""The run folder as the analysis sees it: named files, checked up front, written atomically.

Every reader goes through here so a missing or partial folder fails with one InputError that
names the file and the command that makes it, before anything is overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from input_errors import InputError

MANIFEST = "manifest.json"
OUTPUTS = "outputs.json"
SAMPLES = "samples.jsonl"
METRICS = "metrics.csv"
LOCUST_STATS = "locust_stats.csv"
LOCUST_HISTORY = "locust_stats_history.csv"
LOCUST_FAILURES = "locust_failures.csv"
SUMMARY = "summary.json"
REPORT = "report.html"
CHARTS = "charts"


def parse_time(value: str) -> datetime:
    """ISO-8601 with a trailing Z (as the contract writes it) to an aware UTC datetime."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """The one time format of metrics.csv: ISO-8601 UTC, second resolution, trailing Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RunFolder:
    """A run folder whose manifest has been read; paths of the files the contract names."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """Reads manifest.json; raises InputError when the folder or manifest is missing/bad."""
        if not path.is_dir():
            raise InputError(f"run folder {path} does not exist: run `poolbench run` first")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise InputError(
                f"run folder {path} has no {MANIFEST}: run `poolbench run` first "
                "(or pass the folder of a finished run)"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest_path} is not valid JSON ({exc.msg})") from exc
        if not isinstance(manifest, dict):
            raise InputError(f"{manifest_path} must hold a JSON object")
        return cls(path=path, manifest=manifest)

    def file(self, name: str) -> Path:
        """Path of a named file inside the run folder (may not exist)."""
        return self.path / name

    def require(self, name: str, made_by: str) -> Path:
        """Path of a file that must exist; InputError naming it and what writes it otherwise."""
        target = self.path / name
        if not target.is_file():
            raise InputError(f"run folder {self.path} has no {name}: {made_by}")
        return target

    @property
    def target(self) -> str:
        """`local` or `aws`, as the run recorded it (local when absent: nothing else to ask)."""
        return str(self.manifest.get("target") or "local")

    @property
    def arms(self) -> list[str]:
        """Arms in the order the scenario lists them."""
        arms = (self.manifest.get("scenario") or {}).get("arms") or []
        return [str(a) for a in arms]

    def window(self) -> tuple[datetime, datetime]:
        """The load window (falling back to the run window): what metrics are collected for."""
        start = self.manifest.get("load_started_at") or self.manifest.get("started_at")
        end = self.manifest.get("load_ended_at") or self.manifest.get("ended_at")
        if not start or not end:
            raise InputError(
                f"{self.path / MANIFEST} has no started_at/ended_at: the run did not finish "
                "writing it; re-run `poolbench run`"
            )
        return parse_time(str(start)), parse_time(str(end))

    def outputs(self) -> dict[str, str]:
        """The one stack's outputs from outputs.json (the `cdk deploy --outputs-file` shape)."""
        path = self.require(OUTPUTS, "`poolbench run` copies the target's outputs file there")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON ({exc.msg})") from exc
        if not isinstance(data, dict) or not data:
            raise InputError(f"{path} must hold one stack's outputs")
        stacks = [v for v in data.values() if isinstance(v, dict)]
        if len(stacks) != 1:
            raise InputError(f"{path} must hold exactly one stack, found {len(stacks)}")
        return {str(k): str(v) for k, v in stacks[0].items()}


def write_chunks_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Writes to a temporary file beside `path`, then renames: readers never see half a file
    and an interrupted write leaves the previous version in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; run folders are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """One buffer through write_chunks_atomic."""
    write_chunks_atomic(path, [data])


def write_text_atomic(path: Path, text: str) -> None:
    """UTF-8 text through write_bytes_atomic."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    """Pretty JSON through write_bytes_atomic; NaN is refused so summary.json stays valid JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
