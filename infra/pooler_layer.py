"""The pooler layer: PgBouncer + libevent + the extension, one version shared by every arm.

Why one layer version for all arms: the experiment compares execution models, so the pooler
binary, its defaults and the extension code must be byte-identical across arms. The layer is
built by ``functions/pooler/build_layer.sh`` in amazonlinux:2023 for arm64, as in the seed; its
last step, ``install_layer.sh``, lays out the files (the tests run that step).
"""

from __future__ import annotations

from aws_cdk import BundlingOptions, DockerImage, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.assets import ARCHITECTURE, FUNCTION_RUNTIMES, FUNCTIONS_DIR, bundling_enabled
from infra.settings import Settings

BUILD_IMAGE = "public.ecr.aws/amazonlinux/amazonlinux:2023"
PGBOUNCER_VERSION = "1.25.1"
LAYER_EXCLUDE = ["app", "probe", "pooler/__init__.py", "**/__pycache__", "**/*.pyc"]
"""The layer's input is ``functions/`` without the function packages: ``pooler/`` (the
extension and the scripts that build the layer) and ``contract.py``, which the extension
imports and which ships as /opt/functions/contract.py."""


class PoolerLayer(Construct):
    """A ``LayerVersion`` whose root holds bin/pgbouncer, lib/libevent*, extensions/, the
    extension module (so it lands at /opt/pgbouncer_extension.py) and functions/contract.py."""

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
                    environment={"PGBOUNCER_VERSION": PGBOUNCER_VERSION},
                ),
            )
        else:
            code = lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=LAYER_EXCLUDE)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=code,
            compatible_architectures=[ARCHITECTURE],
            # The function under test's (-c runtime=); the layer's content is the same for both.
            compatible_runtimes=[FUNCTION_RUNTIMES[settings.runtime]],
            description=f"poolbench: PgBouncer {PGBOUNCER_VERSION} extension (arm64, AL2023)",
            removal_policy=RemovalPolicy.DESTROY,
        )
