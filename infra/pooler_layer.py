"""The pooler layer: PgBouncer + libevent + the extension and its own Python, one version shared
by every arm and runtime.

Why one layer version for all arms: the experiment compares execution models, so the pooler
binary, its defaults and the extension code must be byte-identical across arms. The layer is
built by ``functions/pooler/build_layer.sh`` in amazonlinux:2023 for arm64, as in the seed; its
last steps, ``bundle_python.py`` (the interpreter and boto3) and ``install_layer.sh``, lay out
the files (the tests run both).

Why the layer brings a Python: the extension is Python, and ``nodejs24.x`` (minimal Amazon
Linux 2023) has none; with its own, the extension runs the same interpreter and boto3 under
``-c runtime=python`` and ``-c runtime=nodejs``. boto3 and botocore are the versions of this
repository's lock file, as the function assets' psycopg is.
"""

from __future__ import annotations

import importlib.metadata

from aws_cdk import BundlingOptions, DockerImage, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.assets import ARCHITECTURE, FUNCTION_RUNTIMES, FUNCTIONS_DIR, bundling_enabled
from infra.settings import Settings

BUILD_IMAGE = "public.ecr.aws/amazonlinux/amazonlinux:2023"
PGBOUNCER_VERSION = "1.25.1"
LAYER_EXCLUDE = ["app", "probe", "nodejs", "pooler/__init__.py", "**/__pycache__", "**/*.pyc"]
"""The layer's input is ``functions/`` without the function packages: ``pooler/`` (the
extension and the scripts that build the layer) and ``contract.py``, which the extension
imports and which ships as /opt/functions/contract.py."""


def build_environment() -> dict[str, str]:
    """What build_layer.sh reads: PgBouncer's version, and boto3's and botocore's as locked."""
    return {
        "PGBOUNCER_VERSION": PGBOUNCER_VERSION,
        "BOTO3_VERSION": importlib.metadata.version("boto3"),
        "BOTOCORE_VERSION": importlib.metadata.version("botocore"),
    }


class PoolerLayer(Construct):
    """A ``LayerVersion`` whose root holds bin/pgbouncer, lib/libevent*, extensions/, the
    extension module (so it lands at /opt/pgbouncer_extension.py), functions/contract.py and
    pooler-python/ (the interpreter that runs the extension, with boto3)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        if bundling_enabled(self, settings):
            code = lambda_.Code.from_asset(
                str(FUNCTIONS_DIR),
                exclude=LAYER_EXCLUDE,
                bundling=BundlingOptions(
                    image=DockerImage.from_registry(BUILD_IMAGE),
                    platform="linux/arm64",
                    # dnf needs root inside the build container; output files are then root's.
                    user="root",
                    command=["bash", "/asset-input/pooler/build_layer.sh"],
                    environment=build_environment(),
                ),
            )
        else:
            code = lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=LAYER_EXCLUDE)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=code,
            compatible_architectures=[ARCHITECTURE],
            # Both: the layer brings the Python its extension runs on.
            compatible_runtimes=list(FUNCTION_RUNTIMES.values()),
            description=(
                f"poolbench: PgBouncer {PGBOUNCER_VERSION} extension on its own Python 3.13"
                " (arm64, AL2023)"
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
