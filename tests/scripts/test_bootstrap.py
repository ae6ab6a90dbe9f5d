"""scripts/bootstrap on a stock machine: a system Python that is externally managed (PEP 668), no
uv on PATH, and (for the AWS path on macOS or a non-Debian Linux) no apt at all.

Each test runs the real script in a copy of the checkout. uv's cache and npm's cache are the
machine's own, so `uv sync` and `npm ci` resolve from them quickly; the venv, uv itself and the
node_modules folder are built from scratch in the copy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

pytestmark = pytest.mark.skipif(
    not list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")) or not SYSTEM_PYTHON.exists(),
    reason="needs Debian's externally managed /usr/bin/python3",
)


def _checkout_copy(dest: Path) -> Path:
    """The files git knows (tracked and new), as a fresh clone would have them; a space in the
    path, as a user's home folder may have."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    copy = dest / "pool bench"
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = copy / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return copy


def _path_without(bin_dir: Path, hidden: set[str]) -> str:
    """A PATH of one folder linking every system command except the hidden ones; pyenv's and
    cargo's folders (where this machine's uv and newer Python live) are left out."""
    bin_dir.mkdir()
    for folder in SYSTEM_DIRS:
        for entry in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
            link = bin_dir / entry.name
            if entry.name in hidden or link.exists() or link.is_symlink():
                continue
            if entry.is_file() and os.access(entry, os.X_OK):
                link.symlink_to(entry)
    return str(bin_dir)


def _bootstrap(copy: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VIRTUAL_ENV", "PYENV", "UV_PYTHON")) and key != "PATH"
    }
    env |= {"PATH": path, "POOLBENCH_PYTHON": str(SYSTEM_PYTHON)}
    env["npm_config_prefer_offline"] = "true"
    return subprocess.run(
        ["scripts/bootstrap"],
        check=False,
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # from scratch it builds aws-lambda-ric (curl, aws-lambda-cpp, an addon)
    )


def _assert_aws_path_ready(copy: Path, path: str) -> None:
    venv_python = copy / ".venv" / "bin" / "python"
    probe = subprocess.run(
        [str(venv_python), "-c", "import sys, poolbench, aws_cdk; print(sys.base_prefix)"],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": path},
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "/usr", "the venv is not built on the system Python"
    cdk = subprocess.run(
        [str(copy / "node_modules" / ".bin" / "cdk"), "--version"],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": path},
    )
    assert cdk.returncode == 0, cdk.stderr
    assert cdk.stdout.startswith("2.1148.1"), cdk.stdout
    # The project's Node, from the npm registry: 24 (jsii supports it), not the machine's 20
    node = subprocess.run(
        [str(copy / "node_modules" / ".bin" / "node"), "--version"],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": path},
    )
    assert node.stdout.strip() == "v24.21.0", node.stdout + node.stderr
    assert (copy / "functions" / "nodejs" / "node_modules" / "pg" / "package.json").is_file()


def _assert_node_runtime_client_built(copy: Path, path: str) -> None:
    """aws-lambda-ric's native addon, built at install, loads in the project's Node (its init
    reads AWS_LAMBDA_RUNTIME_API, and aborts without it: no Runtime API is contacted here)."""
    addon = copy / "functions" / "nodejs" / "node_modules" / "aws-lambda-ric" / "rapid-client.node"
    assert addon.is_file(), "aws-lambda-ric's addon was not built"
    loaded = subprocess.run(
        [
            str(copy / "node_modules" / ".bin" / "node"),
            "-e",
            "const c = require(process.argv[1]); console.log(typeof c.next)",
            str(addon),
        ],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": path, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"},
    )
    assert loaded.stdout.strip() == "function", loaded.stderr


def test_system_python_refuses_pip_install(tmp_path: Path) -> None:
    """The precondition the bootstrap tests stand on: this machine's system Python reproduces
    PEP 668's refusal, even as root."""
    done = subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "pip", "install", "--dry-run", "uv"],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode != 0
    assert "externally-managed-environment" in done.stderr


@pytest.mark.timeout(1200)
def test_bootstrap_with_externally_managed_python_and_no_uv(tmp_path: Path) -> None:
    copy = _checkout_copy(tmp_path)
    path = _path_without(tmp_path / "bin", {"uv", "uvx"})
    done = _bootstrap(copy, path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "externally-managed" not in done.stderr
    assert (copy / ".tools" / "bin" / "uv").is_file(), "uv not installed into .tools/"
    assert "export PATH=" in done.stdout
    _assert_aws_path_ready(copy, path)
    _assert_node_runtime_client_built(copy, path)
    # Idempotent: a second run installs nothing and says nothing about installing.
    again = _bootstrap(copy, path)
    assert again.returncode == 0, again.stderr
    assert "installing" not in again.stdout


@pytest.mark.timeout(900)
def test_bootstrap_without_apt_sets_up_the_aws_path(tmp_path: Path) -> None:
    # No apt and no cmake (macOS, another Linux): the Node runtime client cannot be built
    copy = _checkout_copy(tmp_path)
    hidden = {"uv", "uvx", "apt-get", "apt", "dpkg", "pgbouncer", "cmake"}
    path = _path_without(tmp_path / "bin", hidden)
    done = _bootstrap(copy, path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "apt-get" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "local stack needs" in line]
    assert len(lines) == 1, done.stderr
    assert "pgbouncer" in lines[0]
    # ... the AWS path is whole (the Node function's pg, for its bundle), the local one says
    # what it lacks
    _assert_aws_path_ready(copy, path)
    assert "local path still needs" in done.stdout and "cmake" in done.stdout, done.stdout
    ric = copy / "functions" / "nodejs" / "node_modules" / "aws-lambda-ric"
    assert not ric.exists()
