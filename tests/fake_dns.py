"""A resolver that answers as a test says, standing in for DNS: the relay's callbacks are judged
by what their names resolve to, and DNS is not the tests' to change."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.main import create_app
from tests.conftest import API_KEY, RelayClient, Upstream, relay_settings
from tests.servers import serve


@dataclass
class FakeResolver:
    """Answers each name with the addresses in `answers` (which a test may change at any time),
    after `delay` seconds; any other name does not exist. Keeps every name it was asked for."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    delay: float = 0.0
    asked: list[str] = field(default_factory=list)

    async def addresses(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        await asyncio.sleep(self.delay)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])


@contextlib.asynccontextmanager
async def relay_resolving_with(
    resolver: FakeResolver, database_url: str, upstream: Upstream, **overrides: Any
) -> AsyncIterator[RelayClient]:
    """`start_relay`, with callbacks' names looked up by `resolver` and private callbacks
    refused unless `overrides` say otherwise."""
    overrides.setdefault("allow_private_callbacks", False)
    settings = relay_settings(database_url, upstream.url, **overrides)
    async with (
        serve(create_app(settings, resolver=resolver)) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http,
    ):
        yield RelayClient(http, settings)
