"""The layer as it ships, without Docker: its layout, and its code on Lambda's Python (3.13)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POOLER = REPO / "functions" / "pooler"
BUILD = POOLER / "build_layer.sh"


def python313() -> str | None:
    """Lambda's Python: on PATH, in pyenv, or the one `scripts/bootstrap` had uv install."""
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


FUNCTIONS = REPO / "functions"
INSTALL = POOLER / "install_layer.sh"


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


def assemble_layer(root: Path) -> Path:
    """build_layer.sh's last step, executed: install_layer.sh lays out the layer from this
    repository with the host's PgBouncer standing in for the one built on Amazon Linux."""
    result = subprocess.run(
        ["bash", str(INSTALL), str(FUNCTIONS), str(root), pgbouncer(), str(host_libevent_dir())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return root


def test_build_script_is_valid_bash_and_ends_in_the_install_step() -> None:
    subprocess.run(["bash", "-n", str(BUILD)], check=True)
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    # The build hands its binary to the very step the tests below execute.
    assert 'bash "$INPUT/pooler/install_layer.sh" "$INPUT" "$OUTPUT"' in BUILD.read_text()


def test_install_step_lays_out_what_the_extension_and_lambda_need(tmp_path: Path) -> None:
    layer = assemble_layer(tmp_path / "opt")
    shipped = sorted(str(p.relative_to(layer)) for p in layer.rglob("*") if p.is_file())
    assert "bin/pgbouncer" in shipped  # PGBOUNCER_BIN's default, /opt/bin/pgbouncer
    assert "extensions/pgbouncer-extension" in shipped
    assert "pgbouncer_extension.py" in shipped
    # The contract the extension imports ships beside it, the file itself, not a copy of it.
    assert {"functions/__init__.py", "functions/contract.py"} <= set(shipped)
    assert (layer / "functions" / "contract.py").read_bytes() == (
        FUNCTIONS / "contract.py"
    ).read_bytes()
    assert any(p.startswith("lib/libevent-2.1.so") for p in shipped)
    assert os.access(layer / "extensions" / "pgbouncer-extension", os.X_OK)
    # Nothing of the function packages: the layer is the pooler only.
    assert not [p for p in shipped if p.startswith(("functions/app", "functions/probe"))]


def test_install_step_refuses_a_missing_libevent(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(INSTALL), str(FUNCTIONS), str(tmp_path / "opt"), pgbouncer(), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"no libevent-2.1.so* in {tmp_path}" in result.stderr


@pytest.fixture(scope="module")
def py313() -> str:
    found = python313()
    if found is None:
        why = "no Python 3.13 interpreter on this machine (scripts/bootstrap provides one)"
        if os.environ.get("CI") == "true":  # the only proof the code runs on Lambda's Python
            pytest.fail(why)
        pytest.skip(why)
    return found


def test_function_code_compiles_on_python_313(py313: str, tmp_path: Path) -> None:
    sources = sorted(str(p) for p in (REPO / "functions").rglob("*.py"))
    sources.append(str(POOLER / "extensions" / "pgbouncer-extension"))
    result = subprocess.run(
        [
            py313,
            "-c",
            "import sys, py_compile\n"
            "for f in sys.argv[2:]:\n"
            "    py_compile.compile(f, cfile=sys.argv[1] + '/x.pyc', doraise=True)",
            str(tmp_path),
            *sources,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_shipped_extension_runs_from_the_layer_root_on_python_313(
    py313: str, tmp_path: Path
) -> None:
    layer = assemble_layer(tmp_path / "opt")
    # Nothing listens on port 9 of loopback: the extension gets as far as registering.
    result = subprocess.run(
        [py313, str(layer / "extensions" / "pgbouncer-extension")],
        env={"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot register with the Extensions API at '127.0.0.1:9'" in result.stdout
    assert "Traceback" not in result.stderr
