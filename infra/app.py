"""The CDK app: reads context into Settings, creates the one stack, runs cdk-nag.

``cdk.json`` runs ``python -m infra.app``. A bad context value ends synthesis with exit code 2 and
one line on stderr naming the key and the fix, not a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.settings import Settings, SettingsError
from infra.stack import PoolbenchStack


def build_app(
    context: Mapping[str, Any] | None = None, *, outdir: str | None = None
) -> tuple[App, PoolbenchStack]:
    """The app and its stack; ``context`` is merged over what the CLI passes (tests use it)."""
    app = App(context=dict(context or {}), outdir=outdir)
    settings = Settings.from_context(app.node.try_get_context)
    stack = PoolbenchStack(app, settings.stack_name, settings=settings)
    if settings.nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack


def main() -> int:
    """Synthesize; settings errors print one line and exit 2."""
    try:
        app, _ = build_app()
    except SettingsError as exc:
        print(f"poolbench infra: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
