"""Read the outputs file that names a target: its API URL and the arms to drive.

`cdk deploy --outputs-file` and `poolbench local up --outputs-file` write the same shape
(docs/contracts.md), so everything downstream of this module sees one `Target` and never which
kind of stack produced it. Every problem becomes one `InputError` line that names the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from functions import contract
from functions.contract import ARMS
from input_errors import InputError


@dataclass(frozen=True)
class Target:
    """One stack's outputs: where to send load and which arms it has."""

    path: Path
    stack: str
    api_url: str
    arms: tuple[str, ...]
    outputs: Mapping[str, str]
    """Every output of the stack as written (function names, MetricsSource, ...)."""

    def arm_url(self, arm: str) -> str:
        """`ApiUrl` with the arm appended as one path segment, whatever its trailing slash."""
        return arm_url(self.api_url, arm)


def arm_url(api_url: str, arm: str) -> str:
    """The URL of one arm: `<ApiUrl>/<arm>` with exactly one slash between them."""
    return f"{api_url.rstrip('/')}/{arm}"


def parse_arms(text: str, *, where: str) -> tuple[str, ...]:
    """Comma-separated arm names, checked against the contract's names; order kept, no repeats."""
    arms = tuple(part.strip() for part in text.split(",") if part.strip())
    if not arms:
        raise InputError(f"{where}: no arms given")
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise InputError(f"{where}: unknown arm {unknown[0]!r} (valid arms: {', '.join(ARMS)})")
    if len(set(arms)) != len(arms):
        raise InputError(f"{where}: an arm is listed twice in {','.join(arms)!r}")
    return arms


def select_arms(available: tuple[str, ...], wanted: str | None, *, where: str) -> tuple[str, ...]:
    """Narrow the target's arms to `wanted` (comma-separated); each must exist in the target."""
    if not wanted:
        return available
    chosen = parse_arms(wanted, where=where)
    missing = [arm for arm in chosen if arm not in available]
    if missing:
        raise InputError(
            f"{where}: arm {missing[0]!r} is not in the target (it has: {', '.join(available)})"
        )
    return chosen


def load_target(path: str | Path, stack: str | None = None) -> Target:
    """Read and check an outputs file; `stack` picks one key when the file holds several."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"outputs file {file}: not found") from None
    except OSError as exc:
        raise InputError(f"outputs file {file}: cannot be read ({exc.strerror})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"outputs file {file}: not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    if not isinstance(document, dict) or not document:
        raise InputError(f"outputs file {file}: expected an object with one stack name as its key")
    if stack is None:
        if len(document) != 1:
            names = ", ".join(sorted(str(key) for key in document))
            raise InputError(
                f"outputs file {file}: several stacks ({names}); name one with --stack"
            )
        stack = next(iter(document))
    elif stack not in document:
        names = ", ".join(sorted(str(key) for key in document))
        raise InputError(f"outputs file {file}: no stack {stack!r} (it has: {names})")
    outputs = document[stack]
    if not isinstance(outputs, dict):
        raise InputError(f"outputs file {file}: stack {stack!r} is not an object of outputs")
    for key in (contract.OUT_API_URL, contract.OUT_ARMS):
        value = outputs.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"outputs file {file}: stack {stack!r} has no {key}")
    api_url = str(outputs[contract.OUT_API_URL]).strip()
    if not api_url.startswith(("http://", "https://")):
        raise InputError(f"outputs file {file}: ApiUrl {api_url!r} is not an http(s) URL")
    arms = parse_arms(str(outputs[contract.OUT_ARMS]), where=f"outputs file {file}: Arms")
    return Target(
        path=file,
        stack=stack,
        api_url=api_url,
        arms=arms,
        outputs={str(key): str(value) for key, value in outputs.items()},
    )
