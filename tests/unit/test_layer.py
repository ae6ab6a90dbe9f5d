"""The layer as it ships, without Docker: its layout, its own Python, and its code on Python 3.13.

The layer is built by build_layer.sh's last two steps, executed here (tests/shipped_layer.py):
bundle_python.py copies this machine's Python 3.13 in as it copies Amazon Linux's on a deploy.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.shipped_layer import (
    BUILD,
    FUNCTIONS,
    INSTALL,
    POOLER,
    REPO,
    assemble_layer,
    bundle_python,
    install_layer,
    require_python313,
)

NO_PYTHON_PATH = "/nonexistent-bin"
"""A PATH on which no python3 is found: as on nodejs24.x."""


def test_build_script_is_valid_bash_and_ends_in_the_bundle_and_install_steps() -> None:
    subprocess.run(["bash", "-n", str(BUILD)], check=True)
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    subprocess.run(["bash", "-n", str(POOLER / "layer_launcher.sh")], check=True)
    # The build hands its interpreter and its binary to the very steps the tests below execute.
    build = BUILD.read_text()
    assert '"python3.13" "$INPUT/pooler/bundle_python.py" "$OUTPUT"' in build
    assert 'bash "$INPUT/pooler/install_layer.sh" "$INPUT" "$OUTPUT"' in build


def test_install_step_lays_out_what_the_extension_and_lambda_need(
    bundled_python: Path, tmp_path: Path
) -> None:
    layer = assemble_layer(tmp_path / "opt", bundled_python)
    shipped = sorted(str(p.relative_to(layer)) for p in layer.rglob("*") if p.is_file())
    assert "bin/pgbouncer" in shipped  # PGBOUNCER_BIN's default, /opt/bin/pgbouncer
    assert "extensions/pgbouncer-extension" in shipped
    assert "pgbouncer_extension.py" in shipped
    assert "pooler-python/launch.py" in shipped
    # The contract the extension imports ships beside it, the file itself, not a copy of it.
    assert {"functions/__init__.py", "functions/contract.py"} <= set(shipped)
    assert (layer / "functions" / "contract.py").read_bytes() == (
        FUNCTIONS / "contract.py"
    ).read_bytes()
    assert any(p.startswith("lib/libevent-2.1.so") for p in shipped)
    assert os.access(layer / "extensions" / "pgbouncer-extension", os.X_OK)
    # Byte-compiled by the layer's Python, as /opt is read-only on Lambda.
    assert any(p.startswith("__pycache__/pgbouncer_extension.cpython-313") for p in shipped)
    assert any(p.startswith("functions/__pycache__/contract.cpython-313") for p in shipped)
    # Nothing of the function packages: the layer is the pooler only.
    assert not [p for p in shipped if p.startswith(("functions/app", "functions/probe"))]
    assert not [p for p in shipped if "nodejs" in p or "node_modules" in p]


def test_install_step_refuses_a_missing_libevent(bundled_python: Path, tmp_path: Path) -> None:
    layer = tmp_path / "opt"
    (layer / "pooler-python").mkdir(parents=True)
    (layer / "pooler-python" / "bin").symlink_to(bundled_python / "pooler-python" / "bin")
    result = install_layer(layer, libevent_dir=tmp_path)
    assert result.returncode == 1
    assert f"no libevent-2.1.so* in {tmp_path}" in result.stderr


def test_install_step_refuses_a_layer_without_its_python(tmp_path: Path) -> None:
    result = install_layer(tmp_path / "opt")
    assert result.returncode == 1
    assert "no bundled Python" in result.stderr and "run bundle_python.py" in result.stderr


def test_bundled_python_runs_alone_with_its_own_stdlib_ssl_and_boto3(
    bundled_python: Path,
) -> None:
    bundle = bundled_python / "pooler-python"
    probe = (
        "import json, ssl, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import boto3, botocore\n"
        "c = boto3.client('secretsmanager', region_name='eu-west-1')\n"
        "print(json.dumps({'prefix': sys.prefix, 'ssl': ssl.__file__, 'boto3': boto3.__file__,"
        " 'botocore': botocore.__version__, 'op': c.meta.method_to_api_mapping['get_secret_value'],"
        " 'libpython': [m.split()[-1] for m in open('/proc/self/maps') if '/libpython' in m],"
        " 'version': sys.version_info[:2]}))"
    )
    # As Lambda would start it from the launcher: no Python on PATH, its own libraries only, and
    # a PYTHONPATH and PYTHONHOME of another Python's that -I must keep out.
    result = subprocess.run(
        [str(bundle / "bin" / "python3"), "-I", "-c", probe, str(bundle / "packages")],
        env={
            "PATH": NO_PYTHON_PATH,
            "LD_LIBRARY_PATH": str(bundle / "lib"),
            "PYTHONPATH": "/usr/lib/python3/dist-packages",
            "PYTHONHOME": "/usr",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    where = json.loads(result.stdout)
    assert where["prefix"] == str(bundle)
    assert where["ssl"].startswith(str(bundle)) and where["boto3"].startswith(str(bundle))
    assert where["version"] == [3, 13]
    # its own libpython, where the interpreter has one (this machine's pyenv build has)
    assert all(lib.startswith(str(bundle)) for lib in where["libpython"]), where["libpython"]
    assert where["op"] == "GetSecretValue"
    assert where["botocore"] == importlib.metadata.version("botocore")  # the lock file's


def test_bundle_keeps_only_what_the_extension_needs(bundled_python: Path) -> None:
    bundle = bundled_python / "pooler-python"
    models = sorted(p.name for p in (bundle / "packages" / "botocore" / "data").iterdir())
    assert [m for m in models if (bundle / "packages" / "botocore" / "data" / m).is_dir()] == [
        "secretsmanager"
    ]
    assert not list(bundle.rglob("test_*.py")) and not list(bundle.rglob("tkinter"))
    assert not [p for p in bundle.rglob("*") if p.is_symlink()]  # nothing rests on zip links
    libraries = {p.name for p in (bundle / "lib").glob("*.so*")}
    assert any(name.startswith("libssl.so") for name in libraries)  # for ssl: TLS to Aurora
    assert not any(name.startswith(("libc.so", "libm.so", "ld-linux")) for name in libraries)
    size_mib = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 2**20
    # This machine's Python keeps its debug symbols (AL2023's is stripped): still far below
    # Lambda's 250 MB for a function and its layers.
    assert size_mib < 150, size_mib


def test_bundle_copies_a_distributions_own_python_too(tmp_path: Path) -> None:
    """AL2023's python3.13 is a distribution's build under /usr, as Debian's python3 is here:
    its standard library stays where the copy could fall back on it. The bundle's own check
    (prefix, ssl, boto3 and libpython inside the copy) must pass for it too."""
    system = Path("/usr/bin/python3")
    if not system.exists():
        pytest.skip("no distribution Python at /usr/bin/python3")
    result = bundle_python(str(system), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = tmp_path / "pooler-python"
    version = subprocess.run(
        [str(bundle / "bin" / "python3"), "-I", "-c", "import sys; print(sys.prefix)"],
        env={"PATH": NO_PYTHON_PATH, "LD_LIBRARY_PATH": str(bundle / "lib")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == str(bundle)


def test_bundle_refuses_a_virtual_environment(tmp_path: Path) -> None:
    venv_python = str(REPO / ".venv" / "bin" / "python")
    result = bundle_python(venv_python, tmp_path)
    assert result.returncode == 1
    assert "not a venv's" in result.stderr
    assert not (tmp_path / "pooler-python").exists()


def test_function_code_compiles_on_python_313(tmp_path: Path) -> None:
    py313 = require_python313()
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


@pytest.mark.parametrize("function_python", ["none", "another", "started-in-its-folder"])
def test_shipped_extension_runs_on_the_layers_python_whatever_the_runtime_has(
    bundled_python: Path, tmp_path: Path, function_python: str
) -> None:
    layer = assemble_layer(tmp_path / "opt", bundled_python)
    env = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9", "PATH": NO_PYTHON_PATH}
    if function_python == "another":
        env["PATH"] = "/usr/bin:/bin"  # this machine's python3 is there, as /var/lang/bin's
    argv, cwd = [str(layer / "extensions" / "pgbouncer-extension")], None
    if function_python == "started-in-its-folder":  # no folder in its own name
        argv, cwd = ["/bin/bash", "pgbouncer-extension"], layer / "extensions"
    # Nothing listens on port 9 of loopback: the extension gets as far as registering.
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot register with the Extensions API at '127.0.0.1:9'" in result.stdout
    assert "on Python 3.13" in result.stdout and str(layer / "pooler-python") in result.stdout
    assert "Traceback" not in result.stderr
