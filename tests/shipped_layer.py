"""The pooler layer as build_layer.sh lays it out, built here without Docker: its last two steps,
bundle_python.py (with this machine's Python 3.13 standing in for Amazon Linux's) and
install_layer.sh (with the host's PgBouncer standing in for the one built on Amazon Linux).

Bundling downloads boto3 from the registry (PyPI, as CI has) and takes a few seconds, so a
session does it once (``bundled_python``) and each layer gets a copy of it."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS = REPO / "functions"
POOLER = FUNCTIONS / "pooler"
BUILD = POOLER / "build_layer.sh"
BUNDLE = POOLER / "bundle_python.py"
INSTALL = POOLER / "install_layer.sh"


def python313() -> str | None:
    """Lambda's Python: on PATH, in pyenv, or the one uv finds."""
    found = shutil.which("python3.13")
    candidates = [found] if found else []
    candidates += sorted(str(p) for p in Path("/root/.pyenv/versions").glob("3.13*/bin/python3.13"))
    uv = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    if Path(uv).exists():
        uv_found = subprocess.run(
            [uv, "python", "find", "3.13"], capture_output=True, text=True, check=False
        )
        if uv_found.returncode == 0 and uv_found.stdout.strip():
            candidates.append(uv_found.stdout.strip())
    for candidate in candidates:
        ok = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if ok.returncode == 0:
            return candidate
    return None


def require_python313() -> str:
    found = python313()
    if found is None:
        why = "no Python 3.13 interpreter on this machine (scripts/bootstrap provides one)"
        if os.environ.get("CI") == "true":  # the only proof the code runs on Lambda's Python
            pytest.fail(why)
        pytest.skip(why)
    return found


def locked_requirements() -> list[str]:
    """boto3 and botocore at the lock file's versions, which infra/pooler_layer.py gives
    build_layer.sh (tests/infra/test_stack.py checks it does). Not imported from there: that
    would start jsii in every test session."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in ("boto3", "botocore")]


def bundle_python(python: str, output: Path) -> subprocess.CompletedProcess[str]:
    """build_layer.sh's bundle step, executed with the given interpreter."""
    return subprocess.run(
        [python, str(BUNDLE), str(output), *locked_requirements()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def host_libevent_dir() -> Path:
    """Where this host keeps libevent-2.1 (Debian's multiarch folder, or lib64 as on AL2023)."""
    for candidate in (*Path("/usr/lib").glob("*-linux-gnu"), Path("/usr/lib64"), Path("/usr/lib")):
        if any(candidate.glob("libevent-2.1.so*")):
            return candidate
    pytest.fail("no libevent-2.1 on this host: run scripts/bootstrap (it installs PgBouncer)")


def pgbouncer() -> str:
    found = shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if found is None:
        pytest.fail("pgbouncer not found: run scripts/bootstrap")
    return found


def install_layer(root: Path, libevent_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """build_layer.sh's last step, executed on this repository's functions/ folder."""
    libevent = str(libevent_dir or host_libevent_dir())
    return subprocess.run(
        ["bash", str(INSTALL), str(FUNCTIONS), str(root), pgbouncer(), libevent],
        capture_output=True,
        text=True,
        check=False,
    )


def assemble_layer(root: Path, bundled: Path) -> Path:
    """A whole layer in root: a copy of the session's bundled Python, then install_layer.sh."""
    shutil.copytree(bundled / "pooler-python", root / "pooler-python", symlinks=True)
    result = install_layer(root)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="session")
def bundled_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding pooler-python/, as bundle_python.py leaves it; once per session."""
    output = tmp_path_factory.mktemp("bundle")
    result = bundle_python(require_python313(), output)
    assert result.returncode == 0, result.stderr[-3000:]
    return output
