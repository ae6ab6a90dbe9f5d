"""Claims the README makes, each checked against the real part (issue: tests that fail).

- the gateway answers a function error and a malformed proxy response with 502, as API Gateway;
- the handler's 400 (bad parameter) and 503 (database error) reach the client as HTTP statuses;
- the standard arm throttles beyond its concurrency limit (API Gateway's 500);
- a Managed Instances EE refuses an extension that registers for INVOKE.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from pathlib import Path

import pytest

from local.execution_environment import EEInitError, EESettings, ExecutionEnvironment
from local.function_models import StandardModel
from local.gateway import Gateway
from local.settings import StackSettings, StandardSettings
from local.stack import running_stack
from tests.local.ee_settings import ee_settings
from tests.local.http import fire, statuses

pytestmark = pytest.mark.local


def odd_function(tmp_path: Path, handler: str) -> StandardModel:
    """A real standard arm whose EEs run one of tests/local/handlers/odd.py (no extension)."""

    def make_settings(ee_id: str, max_concurrency: int | None) -> EESettings:
        return ee_settings(
            tmp_path,
            {},
            ee_id,
            max_concurrency=max_concurrency,
            layer_dir=None,
            handler=f"tests.local.handlers.odd.{handler}",
            preload=(),
        )

    return StandardModel("odd", make_settings, StandardSettings())


@pytest.mark.parametrize("handler", ["malformed", "raises"])
def test_a_function_error_or_a_malformed_response_is_a_502(tmp_path: Path, handler: str) -> None:
    async def scenario() -> list[int]:
        model = odd_function(tmp_path, handler)
        await model.start()
        gateway = Gateway({"odd": model}, dict, 0)
        await gateway.start()
        try:
            url = gateway.url + "odd"
            replies = await asyncio.to_thread(fire, url, 2)
            return [r.status for r in replies] + [len(replies[0].body)]
        finally:
            await gateway.stop()
            await model.stop()

    *codes, body_keys = asyncio.run(scenario())
    assert codes == [502, 502]
    assert body_keys == 1  # {"message": "Internal server error"}, as API Gateway


def test_handler_400_and_503_reach_the_client_and_the_limit_throttles(tmp_path: Path) -> None:
    settings = StackSettings(
        run_dir=tmp_path,
        arms=("standard", "proxy"),
        standard=StandardSettings(concurrency_limit=2),
    )
    with running_stack(settings) as runner:
        url = runner.stack.api_url + "standard"
        # a bad parameter is the handler's 400, naming it
        (bad,) = fire(url, 1, sleep_ms="soon")
        # beyond the concurrency limit of 2, Lambda throttles: API Gateway's 500
        limited = fire(url, 5, sleep_ms=1500)
        throttles = runner.stack.models["standard"].counters.total["Throttles"]
        # when the database endpoint is gone (the proxy arm's, here), the handler answers 503
        assert runner.stack.shared_pooler is not None
        runner.call(asyncio.to_thread(runner.stack.shared_pooler.stop))
        down = fire(runner.stack.api_url + "proxy", 1, sleep_ms=0)

    assert bad.status == 400
    assert "sleep_ms" in str(bad.body)
    assert statuses(limited) == {200: 2, 500: 3}
    assert throttles == 3
    assert [r.status for r in down] == [503]
    assert "database error" in str(down[0].body)


def test_a_managed_ee_refuses_an_extension_that_registers_for_invoke(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "extensions").mkdir(parents=True)
    script = layer / "extensions" / "greedy"
    script.write_text(
        textwrap.dedent(
            """\
            #!/usr/bin/env python3
            import json, os, sys, urllib.error, urllib.request
            api = os.environ["AWS_LAMBDA_RUNTIME_API"]
            req = urllib.request.Request(
                f"http://{api}/2020-01-01/extension/register",
                data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
                headers={"Lambda-Extension-Name": "greedy"},
                method="POST",
            )
            try:
                urllib.request.urlopen(req)
            except urllib.error.HTTPError as exc:
                print("refused:", exc.code, exc.read().decode(), flush=True)
                sys.exit(3)
            """
        )
    )
    script.chmod(0o755)
    ee_settings = EESettings(
        ee_id="managed-greedy",
        work_dir=tmp_path / "ee",
        function_env={},
        tag=uuid.uuid4().hex,
        max_concurrency=2,
        layer_dir=layer,
    )

    async def scenario() -> str:
        ee = ExecutionEnvironment(ee_settings)
        try:
            await ee.start()
        except EEInitError as exc:
            return str(exc)
        finally:
            await ee.shutdown()
        return "started"

    outcome = asyncio.run(scenario())
    log = (tmp_path / "ee" / "extensions.log").read_text()
    assert "exited with code 3" in outcome
    assert "refused: 400" in log
    assert "Extension.InvalidEvent" in log
