"""The function assets' pip step, executed: pip resolves it against the registry for cp313/arm64.

Docker is not needed to know whether bundling can work: the bundling script runs exactly
``pip_install_command``, and pip's ``--dry-run --report`` resolves that command's wheels (with
their dependencies) for the target platform without installing anything. Needs the package
registry (PyPI), as CI has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from infra.assets import (
    FUNCTIONS_DIR,
    PIP_PLATFORMS,
    PYTHON_VERSION,
    asset_requirements,
    copy_commands,
    pip_install_command,
)

pytestmark = pytest.mark.infra

PIP = "pip==25.3"
"""A pinned pip for the resolution (the SAM build image brings its own recent pip)."""


def resolve(command: list[str], report: Path) -> subprocess.CompletedProcess[str]:
    """Run the asset's own pip command in dry-run mode, writing pip's installation report."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH: run scripts/bootstrap")
    assert command[:2] == ["pip", "install"], command
    return subprocess.run(
        [uv, "tool", "run", "--from", PIP, *command, "--dry-run", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_every_asset_requirement_resolves_to_a_wheel_the_arm64_runtime_loads(
    tmp_path: Path,
) -> None:
    # Given the pip command the bundling script runs
    command = pip_install_command(str(tmp_path / "asset-output"))
    # When pip resolves it for cp313/aarch64 against the registry
    report = tmp_path / "report.json"
    result = resolve(command, report)
    # Then every requirement (and every dependency) resolves ...
    assert result.returncode == 0, result.stderr[-3000:]
    installs: list[dict[str, Any]] = json.loads(report.read_text())["install"]
    resolved = {
        canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in installs
    }
    for requirement in map(Requirement, asset_requirements()):
        name = canonicalize_name(requirement.name)
        assert name in resolved, f"{requirement} did not resolve: {sorted(resolved)}"
        assert requirement.specifier.contains(resolved[name]), (requirement, resolved[name])
    # ... psycopg's compiled half included (psycopg without it cannot connect) ...
    assert "psycopg-binary" in resolved
    # ... and each one is a wheel for CPython 3.13 on one of the listed arm64 platforms (or pure)
    interpreter = "cp" + PYTHON_VERSION.replace(".", "")
    for item in installs:
        filename = item["download_info"]["url"].rsplit("/", 1)[-1]
        assert filename.endswith(".whl"), filename
        _, _, _, tags = parse_wheel_filename(filename)
        assert any(
            t.platform in (*PIP_PLATFORMS, "any")
            and (t.interpreter in (interpreter, "py3") or t.abi == "abi3")
            for t in tags
        ), filename


@pytest.mark.parametrize("package", ["app", "probe"])
def test_bundling_copies_the_package_and_the_contract_it_imports(
    package: str, tmp_path: Path
) -> None:
    # Given the bundling script's steps after pip, run on the repository's functions/ folder
    out = tmp_path / "asset-output"
    script = " && ".join(copy_commands(package, str(FUNCTIONS_DIR), str(out)))
    subprocess.run(["bash", "-c", script], check=True)
    # Then the asset imports the contract from itself alone (-I -S: no repository, no venv)
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1]]; import functions.contract as c; "
        "print(c.__file__); print(','.join(c.ARMS))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    where, arms = result.stdout.splitlines()
    assert Path(where) == out / "functions" / "contract.py"
    assert arms == "standard,managed,proxy,direct,managed-direct"
    assert (out / "functions" / package / "handler.py").is_file()
    others = {"app", "probe", "pooler"} - {package}
    assert not [p for p in others if (out / "functions" / p).exists()]
