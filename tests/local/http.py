"""A real HTTP client for the local tests: n concurrent requests, statuses and bodies back."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


async def _fire(url: str, n: int, params: dict[str, str]) -> list[Reply]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> Reply:
            async with session.get(url, params=params) as response:
                text = await response.text()
                return Reply(response.status, json.loads(text) if text else {})

        return await asyncio.gather(*(one() for _ in range(n)))


def fire(url: str, n: int, **params: Any) -> list[Reply]:
    """n requests at once against url, as n users would send them."""
    return asyncio.run(_fire(url, n, {k: str(v) for k, v in params.items()}))


def statuses(replies: list[Reply]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for reply in replies:
        counts[reply.status] = counts.get(reply.status, 0) + 1
    return counts
