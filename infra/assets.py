"""Lambda code assets: a package under ``functions/`` plus psycopg, built for arm64 / Python 3.13.

Why Docker bundling with pip's cross-platform flags: psycopg[binary] ships manylinux aarch64
wheels, so ``pip install --platform manylinux2014_aarch64 --only-binary=:all:`` in the SAM
python3.13 build image gets the exact files the arm64 runtime needs on any host, without QEMU.
The psycopg version is the one in this repository's lock file, so AWS runs what the local
stack tested.

Why a switch: tests (and machines without Docker) synthesize with ``-c bundle=false``; the asset
is then the source folder itself, and the template is otherwise identical.
"""

from __future__ import annotations

import importlib.metadata
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


def psycopg_requirement() -> str:
    """``psycopg[binary]==<locked version>``: the function ships what the tests ran."""
    return f"psycopg[binary]=={importlib.metadata.version('psycopg')}"


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
            "pip install --quiet --no-cache-dir --disable-pip-version-check"
            " --target /asset-output --platform manylinux2014_aarch64 --implementation cp"
            f" --python-version 3.13 --only-binary=:all: '{psycopg_requirement()}'",
            "mkdir -p /asset-output/functions",
            "cp /asset-input/__init__.py /asset-output/functions/__init__.py",
            f"cp -r /asset-input/{package} /asset-output/functions/{package}",
            "find /asset-output -name __pycache__ -prune -exec rm -rf {} +",
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
