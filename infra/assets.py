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
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
RUNTIME = lambda_.Runtime.PYTHON_3_13
"""The Python runtime: the probe's always, the arms' with ``-c runtime=python``."""
NODE_RUNTIME = lambda_.Runtime.NODEJS_24_X
ARCHITECTURE = lambda_.Architecture.ARM_64
FUNCTION_RUNTIMES = {"python": RUNTIME, "nodejs": NODE_RUNTIME}
"""The Lambda runtime of the function under test, by ``-c runtime=``."""
HANDLERS = {"python": "functions.app.handler.handler", "nodejs": "index.handler"}
NODE_FUNCTION_DIR = FUNCTIONS_DIR / "nodejs"
FUNCTION_PACKAGES = ("app", "probe", "pooler")
"""The sub-packages of ``functions/``: each asset takes one and leaves out the others."""
NOT_PYTHON = ("nodejs",)
"""Folders of ``functions/`` no Python asset ships (the Node.js function, its node_modules)."""

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
    exclude = [*others, *NOT_PYTHON, *_NOISE]
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


NODE_SOURCES = ("index.mjs", "package.json", "package-lock.json")
"""What the Node.js function's asset is made of: the handler and the lockfile npm installs."""


def npm_bundle_commands(output_dir: str) -> list[list[str]]:
    """The one recipe, run locally or in Docker: the lockfile's production packages (pg and its
    pure-JavaScript dependencies; aws-lambda-ric is a devDependency and stays out) installed into
    the output beside the handler. ``--ignore-scripts``: nothing of pg's builds anything."""
    return [
        [
            "npm",
            "ci",
            "--omit=dev",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
            output_dir,
        ]
    ]


@jsii.implements(ILocalBundling)
class NpmLocalBundling:
    """Bundles the Node.js function on this machine, no Docker: pg is pure JavaScript, so what
    npm installs here is what runs on arm64 Linux. Declines (Docker then runs the same commands
    in the nodejs24.x build image) when npm is not on PATH."""

    def try_bundle(self, output_dir: str, **_options: Any) -> bool:
        if shutil.which("npm") is None:
            return False
        bundle_node_function(Path(output_dir))
        return True


def bundle_node_function(output_dir: Path) -> None:
    """Copies the handler and lockfile into output_dir and installs the production packages."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in NODE_SOURCES:
        shutil.copy2(NODE_FUNCTION_DIR / name, output_dir / name)
    for command in npm_bundle_commands(str(output_dir)):
        subprocess.run(command, check=True, cwd=output_dir, capture_output=True, text=True)


def node_function_code(scope: Construct, settings: Settings) -> lambda_.Code:
    """``functions/nodejs``: index.mjs with pg from the lockfile, bundled by ``npm ci
    --omit=dev`` (locally when npm is there, else in Docker); unbundled (tests), the sources."""
    exclude = ["node_modules", "**/node_modules"]
    if not bundling_enabled(scope, settings):
        return lambda_.Code.from_asset(str(NODE_FUNCTION_DIR), exclude=exclude)
    script = " && ".join(
        [
            *(f"cp /asset-input/{name} /asset-output/{name}" for name in NODE_SOURCES),
            *(shlex.join(c) for c in npm_bundle_commands("/asset-output")),
        ]
    )
    return lambda_.Code.from_asset(
        str(NODE_FUNCTION_DIR),
        exclude=exclude,
        bundling=BundlingOptions(
            image=NODE_RUNTIME.bundling_image,
            command=["bash", "-c", script],
            environment={"HOME": "/tmp", "npm_config_cache": "/tmp/.npm"},
            local=NpmLocalBundling(),
        ),
    )
