"""One EE's settings for tests that start a single ExecutionEnvironment by hand: its own folder
under the test's tmp_path and a fresh process tag, so the orphan guard can tell its processes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from local.execution_environment import EESettings


def ee_settings(
    tmp_path: Path, env: dict[str, str], ee_id: str, tag: str | None = None, **extra: Any
) -> EESettings:
    """tag: a fresh one unless the EE must carry another's (a zygote's, whose forks it runs)."""
    return EESettings(
        ee_id=ee_id,
        work_dir=tmp_path / ee_id,
        function_env=env,
        tag=tag or uuid.uuid4().hex,
        **extra,
    )
