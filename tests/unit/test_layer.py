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


def assemble_layer(root: Path) -> Path:
    """What build_layer.sh installs from this repository (the PgBouncer build aside)."""
    (root / "extensions").mkdir(parents=True)
    shutil.copy2(POOLER / "extensions" / "pgbouncer-extension", root / "extensions")
    shutil.copy2(POOLER / "pgbouncer_extension.py", root)
    return root


def test_build_script_is_valid_bash_and_installs_what_the_layout_needs() -> None:
    subprocess.run(["bash", "-n", str(BUILD)], check=True)
    script = BUILD.read_text()
    assert 'PGBOUNCER_VERSION="${PGBOUNCER_VERSION:-1.25.1}"' in script
    assert (
        '"$INPUT/extensions/pgbouncer-extension" "$OUTPUT/extensions/pgbouncer-extension"' in script
    )
    assert '"$INPUT/pgbouncer_extension.py" "$OUTPUT/pgbouncer_extension.py"' in script
    assert 'install -m 0755 pgbouncer "$OUTPUT/bin/pgbouncer"' in script  # /opt/bin/pgbouncer


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
