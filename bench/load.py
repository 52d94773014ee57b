"""The harness's own HTTP load: the raw client-loop rates, and registering watches.

Registrations are sent with aiohttp, so that the harness is not what limits the figure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
import httpx

from app import transport

REQUEST_TIMEOUT = 30.0


async def client_loop_rates(url: str, *, concurrency: int, seconds: float) -> dict[str, float]:
    """Requests/s of a GET loop at `concurrency` requests in flight, per client library, and
    over the relay's own transport as its upstream client uses it (no `httpx.AsyncClient`)."""
    return {
        "httpx.AsyncClient (default transport)": await _httpx_rate(url, concurrency, seconds),
        "aiohttp.ClientSession": await _aiohttp_rate(url, concurrency, seconds),
        "httpx.Request over the relay's transport": await _relay_transport_rate(
            url, concurrency, seconds
        ),
    }


async def _run_workers(
    concurrency: int, seconds: float, get: Callable[[], Awaitable[None]]
) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await get()
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def _httpx_rate(url: str, concurrency: int, seconds: float) -> float:
    async with httpx.AsyncClient(trust_env=False) as client:

        async def get() -> None:
            (await client.get(url)).raise_for_status()

        return await _run_workers(concurrency, seconds, get)


async def _aiohttp_rate(url: str, concurrency: int, seconds: float) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get() -> None:
            async with session.get(url) as response:
                await response.read()
                response.raise_for_status()

        return await _run_workers(concurrency, seconds, get)


async def _relay_transport_rate(url: str, concurrency: int, seconds: float) -> float:
    extensions = transport.timeout_extension(REQUEST_TIMEOUT)
    async with transport.create_transport(max_connections=concurrency) as relay_transport:

        async def get() -> None:
            request = httpx.Request("GET", url, extensions=extensions)
            response = await relay_transport.handle_async_request(request)
            await response.aread()
            response.raise_for_status()

        return await _run_workers(concurrency, seconds, get)


@dataclass(frozen=True, slots=True)
class Registration:
    task_id: str
    sent: float
    done: float
    #: The HTTP status, or 0 when the request failed (timeout, connection).
    status: int

    @property
    def latency(self) -> float:
        return self.done - self.sent


async def register_all(
    relay_urls: Sequence[str],
    *,
    api_key: str,
    task_ids: Sequence[str],
    callback_url: Callable[[str], str],
    concurrency: int,
    deadline: float,
) -> list[Registration]:
    """`POST /v1/watches` for every task, `concurrency` clients at a time, until `deadline`
    (a `time.time()`); returns one record per request sent. `callback_url` gives each task's.
    With several relays (replicas), the clients are shared out among them."""
    pending = iter(task_ids)
    records: list[Registration] = []

    async def client(session: aiohttp.ClientSession, url: str) -> None:
        for task_id in pending:
            if time.time() >= deadline:
                return
            sent = time.time()
            try:
                body = {"task_id": task_id, "callback_url": callback_url(task_id)}
                async with session.post(url, json=body) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            records.append(Registration(task_id, sent, time.time(), status))

    # One session whose pool holds a connection per client.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        headers={"Authorization": f"Bearer {api_key}"},
    ) as session:
        urls = [f"{relay_urls[n % len(relay_urls)]}/v1/watches" for n in range(concurrency)]
        await asyncio.gather(*(client(session, url) for url in urls))
    return records
