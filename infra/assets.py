"""Lambda code assets: a package under ``functions/`` plus psycopg, built for arm64 / Python 3.13.

Why Docker bundling with pip's cross-platform flags: psycopg[binary] ships manylinux aarch64
wheels, so ``pip install --platform ... --only-binary=:all:`` in the SAM python3.13 build image
gets the exact files the arm64 runtime needs on any host, without QEMU. The psycopg version is
the one in this repository's lock file, so AWS runs what the local stack tested.

Why several ``--platform`` tags: psycopg-binary 3.3.9 for cp313/aarch64 ships only a
``manylinux_2_27_aarch64.manylinux_2_28_aarch64`` wheel, which pip does not take for
``manylinux2014_aarch64`` alone ("No matching distribution found"). Amazon Linux 2023 has glibc
2.34, so every manylinux tag up to 2_34 runs there; pip accepts ``--platform`` repeatedly and
takes a wheel matching any of them. ``pip_install_command`` is the one list that both the
bundling script and the test resolving it against the registry (tests/infra/test_assets.py) use.

Why a switch: tests (and machines without Docker) synthesize with ``-c bundle=false``; the asset
is then the source folder itself, and the template is otherwise identical.
"""

from __future__ import annotations

import importlib.metadata
import shlex
from pathlib import Path

from aws_cdk import AssetHashType, BundlingOptions, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
FUNCTION_PACKAGES = ("app", "probe", "pooler")
"""The sub-packages of ``functions/``: each asset takes one and leaves out the others."""

_NOISE = ("**/__pycache__", "**/*.pyc", "**/.mypy_cache", "**/.pytest_cache")


def bundling_enabled(scope: Construct, settings: Settings) -> bool:
    """Bundle only when asked (``bundle``) and when the CLI wants this stack bundled.

    ``Stack.bundling_required`` honours ``aws:cdk:bundling-stacks`` (``cdk synth --exclusively``,
    ``cdk ls``), so either switch alone keeps Docker out of a synthesis.
    """
    return settings.bundle and Stack.of(scope).bundling_required


PYTHON_VERSION = "3.13"
"""The runtime's Python (``RUNTIME``), as pip's ``--python-version`` spells it."""

RUNTIME_GLIBC_MINOR = 34
"""Amazon Linux 2023 (the python3.13 runtime's OS) ships glibc 2.34."""

PIP_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_aarch64" for minor in range(RUNTIME_GLIBC_MINOR, 16, -1)),
    "manylinux2014_aarch64",
)
"""Every wheel platform the arm64 runtime can load, newest first: what pip would compute on the
runtime itself. pip does not widen a ``--platform manylinux_2_X`` tag to older glibc versions
(it widens only the legacy ``manylinux2014``/``2010`` aliases), so each one is listed."""


def psycopg_requirement() -> str:
    """``psycopg[binary]==<locked version>``: the function ships what the tests ran."""
    return f"psycopg[binary]=={importlib.metadata.version('psycopg')}"


def asset_requirements() -> tuple[str, ...]:
    """Everything the function assets install with pip (the app and the probe alike)."""
    return (psycopg_requirement(),)


def pip_install_command(target: str) -> list[str]:
    """The pip command that fills an asset: wheels for cp313 on linux/arm64 only, into target."""
    platforms = [arg for p in PIP_PLATFORMS for arg in ("--platform", p)]
    return [
        "pip",
        "install",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--target",
        target,
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        *asset_requirements(),
    ]


def function_code(scope: Construct, settings: Settings, package: str) -> lambda_.Code:
    """``functions/<package>`` (importable as ``functions.<package>``) with psycopg beside it."""
    if package not in FUNCTION_PACKAGES:
        raise ValueError(f"unknown functions package {package!r}")
    others = [p for p in FUNCTION_PACKAGES if p != package]
    exclude = [*others, *_NOISE]
    if not bundling_enabled(scope, settings):
        return lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=exclude)
    script = " && ".join(
        [
            shlex.join([*pip_install_command("/asset-output"), "--quiet"]),
            *copy_commands(package, "/asset-input", "/asset-output"),
        ]
    )
    return lambda_.Code.from_asset(
        str(FUNCTIONS_DIR),
        exclude=exclude,
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            command=["bash", "-c", script],
            environment={"HOME": "/tmp"},
        ),
    )


def copy_commands(package: str, source: str, output: str) -> list[str]:
    """The bundling script's shell steps after pip: ``functions/<package>`` and the contract
    module it imports (``functions/contract.py``) into the asset. Separate from the pip step so
    the tests run exactly these lines on the repository's files."""
    src, out = shlex.quote(source), shlex.quote(output)
    return [
        f"mkdir -p {out}/functions",
        f"cp {src}/__init__.py {out}/functions/__init__.py",
        f"cp {src}/contract.py {out}/functions/contract.py",
        f"cp -r {src}/{package} {out}/functions/{package}",
        f"find {out} -name __pycache__ -prune -exec rm -rf {{}} +",
    ]
