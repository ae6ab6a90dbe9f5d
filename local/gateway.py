"""The API Gateway front: HTTP in, REST proxy events (payload 1.0) to each arm, HTTP out.

It answers as API Gateway's REST proxy integration does: the function's proxy response as
given; a Lambda throttle (429) becomes 500 {"message": "Internal server error"}; a function
error or a malformed proxy response becomes 502. Every answer carries x-amzn-RequestId.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from local.function_models import FunctionModel, Throttled

logger = logging.getLogger(__name__)

INTERNAL_ERROR = {"message": "Internal server error"}
STAGE = "prod"
"""The stage path API Gateway puts in front of every resource (`ApiUrl` ends in `/prod/`):
the local API serves under the same one, so one URL shape serves both targets."""


def proxy_event(request: web.Request, arm: str, body: bytes, request_id: str) -> dict[str, Any]:
    """The REST API proxy event, version 1.0, for a request on the resource /<arm>."""
    multi_query: dict[str, list[str]] = {}
    for key, value in request.query.items():
        multi_query.setdefault(key, []).append(value)
    multi_headers: dict[str, list[str]] = {}
    for key, value in request.headers.items():
        multi_headers.setdefault(key, []).append(value)
    text_body: str | None = None
    is_base64 = False
    if body:
        try:
            text_body = body.decode()
        except UnicodeDecodeError:
            text_body, is_base64 = base64.b64encode(body).decode(), True
    return {
        "resource": f"/{arm}",
        "path": request.path.removeprefix(f"/{STAGE}"),
        "httpMethod": request.method,
        "headers": {k: v[-1] for k, v in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": f"/{arm}",
            "httpMethod": request.method,
            "path": request.path,
            "stage": STAGE,
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "000000000000",
            "apiId": "local",
            "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
            "identity": {"sourceIp": request.remote or "127.0.0.1"},
        },
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


def to_http(payload: bytes, request_id: str) -> web.Response:
    """The function's proxy response as HTTP, or 502 when it is not one (as API Gateway)."""
    try:
        response = json.loads(payload)
        status = int(response["statusCode"])
    except (ValueError, KeyError, TypeError):
        return error_response(502, request_id)
    headers: dict[str, str] = {}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers[key] = ",".join(str(v) for v in values)
    headers.update({k: str(v) for k, v in (response.get("headers") or {}).items()})
    headers["x-amzn-RequestId"] = request_id
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()
    return web.Response(status=status, body=raw, headers=headers)


def error_response(
    status: int, request_id: str, body: Mapping[str, str] = INTERNAL_ERROR
) -> web.Response:
    return web.json_response(dict(body), status=status, headers={"x-amzn-RequestId": request_id})


class Gateway:
    """One HTTP server: /prod/<arm> for each arm, /prod/_poolbench/metrics for the latest
    sample (the stage path as on API Gateway)."""

    def __init__(
        self,
        models: Mapping[str, FunctionModel],
        latest_metrics: Callable[[], dict[str, Any]],
        port: int = 0,
    ) -> None:
        self.models = models
        self.latest_metrics = latest_metrics
        self.requested_port = port
        self.port = 0
        self._runner: web.AppRunner | None = None
        # Per arm: Lambda 429s answered 500, and requests cut off by the stack's own stop
        # (in flight when it began; Locust had already stopped counting them).
        self.throttled: dict[str, int] = {}
        self.cut_off: dict[str, int] = {}
        self.stopping = False

    @property
    def url(self) -> str:
        """The API's URL with its stage path, as API Gateway's `ApiUrl`."""
        return f"http://127.0.0.1:{self.port}/{STAGE}/"

    async def start(self) -> None:
        app = web.Application(client_max_size=6 * 1024 * 1024)
        app.add_routes(
            [
                web.get(f"/{STAGE}/_poolbench/metrics", self._metrics),
                web.route("*", f"/{STAGE}/{{arm}}", self._invoke),
                web.route("*", f"/{STAGE}/{{arm}}/{{tail:.*}}", self._invoke),
            ]
        )
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.requested_port, backlog=4096)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self.stopping = True
        runner, self._runner = self._runner, None
        if runner:
            await runner.cleanup()

    def log_totals(self) -> None:
        """One line each for throttles and for requests the stop cut off, once all is stopped."""
        if self.throttled:
            counts = ", ".join(f"{arm} {n:,}" for arm, n in sorted(self.throttled.items()))
            logger.warning("throttled requests (answered 500): %s", counts)
        if self.cut_off:
            counts = ", ".join(f"{arm} {n:,}" for arm, n in sorted(self.cut_off.items()))
            logger.warning("requests in flight when the stack stopped, cut off: %s", counts)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.json_response(self.latest_metrics())

    async def _invoke(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        model = self.models.get(request.match_info["arm"])
        if model is None:
            known = ", ".join(f"/{arm}" for arm in self.models)
            body = {"message": f"Not Found: no resource {request.path}; this API has {known}"}
            return error_response(404, request_id, body)
        event = proxy_event(request, model.arm, await request.read(), request_id)
        try:
            payload = await model.invoke(json.dumps(event).encode(), request_id)
        except Throttled:
            # 500 as API Gateway answers; named here once per arm, counted for the closing line.
            self.throttled[model.arm] = self.throttled.get(model.arm, 0) + 1
            if self.throttled[model.arm] == 1:
                logger.warning(
                    "%s %s: throttled (Lambda 429: no free slot or concurrency; answered 500 as"
                    " API Gateway does); further throttles are counted, not logged",
                    model.arm,
                    request_id,
                )
            return error_response(500, request_id)
        except Exception as exc:  # a function or EE failure: API Gateway says 502, we log why
            if self.stopping:  # the stack's own stop cut it off: counted, reported once
                self.cut_off[model.arm] = self.cut_off.get(model.arm, 0) + 1
            else:
                logger.warning("%s %s: %s: %s", model.arm, request_id, type(exc).__name__, exc)
            return error_response(502, request_id)
        return to_http(payload, request_id)
