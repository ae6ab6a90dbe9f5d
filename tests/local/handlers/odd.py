"""Handlers that misbehave in the ways API Gateway turns into a 502 (tests only)."""

from __future__ import annotations

from typing import Any


def malformed(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Not a proxy response: no statusCode."""
    return {"hello": "world"}


def raises(event: dict[str, Any], context: object) -> dict[str, Any]:
    raise RuntimeError("the function failed")
