"""The harness's own HTTP load: the raw client-loop rate, and registering watches.

aiohttp is used for registrations when it is installed (`pip install '.[bench]'`), so the
harness is not what limits the figure; without it, each simulated client has its own httpx
client (no shared pool queue).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

HAS_AIOHTTP = importlib.util.find_spec("aiohttp") is not None
REQUEST_TIMEOUT = 30.0


async def client_loop_rates(url: str, *, concurrency: int, seconds: float) -> dict[str, float]:
    """Requests/s of a GET loop at `concurrency` requests in flight, per client library."""
    rates = {"httpx.AsyncClient (default transport)": await _httpx_rate(url, concurrency, seconds)}
    if HAS_AIOHTTP:
        rates["aiohttp.ClientSession"] = await _aiohttp_rate(url, concurrency, seconds)
    return rates


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
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get() -> None:
            async with session.get(url) as response:
                await response.read()
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


Post = Callable[[str], Awaitable[int]]


async def register_all(
    relay_url: str,
    *,
    api_key: str,
    task_ids: Sequence[str],
    callback_url: str,
    concurrency: int,
    deadline: float,
) -> list[Registration]:
    """`POST /v1/watches` for every task, `concurrency` clients at a time, until `deadline`
    (a `time.time()`); returns one record per request sent."""
    url = f"{relay_url}/v1/watches"
    headers = {"Authorization": f"Bearer {api_key}"}
    pending = iter(task_ids)
    records: list[Registration] = []

    async def client(post: Post) -> None:
        for task_id in pending:
            if time.time() >= deadline:
                return
            sent = time.time()
            status = await post(task_id)
            records.append(Registration(task_id, sent, time.time(), status))

    def body(task_id: str) -> dict[str, object]:
        return {"task_id": task_id, "callback_url": callback_url}

    clients = _aiohttp_clients if HAS_AIOHTTP else _httpx_clients
    await clients(url, headers, body, client, concurrency)
    return records


Body = Callable[[str], dict[str, object]]
Client = Callable[[Post], Awaitable[None]]


async def _aiohttp_clients(
    url: str, headers: dict[str, str], body: Body, client: Client, concurrency: int
) -> None:
    """One session whose pool holds a connection per client."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:

        async def post(task_id: str) -> int:
            try:
                async with session.post(url, json=body(task_id)) as response:
                    await response.read()
                    return response.status
            except (aiohttp.ClientError, TimeoutError):
                return 0

        await asyncio.gather(*(client(post) for _ in range(concurrency)))


async def _httpx_clients(
    url: str, headers: dict[str, str], body: Body, client: Client, concurrency: int
) -> None:
    """An httpx client per simulated client, so no request waits in a shared pool queue."""

    async def one() -> None:
        async with httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT, headers=headers, trust_env=False
        ) as http:

            async def post(task_id: str) -> int:
                try:
                    return (await http.post(url, json=body(task_id))).status_code
                except httpx.HTTPError:
                    return 0

            await client(post)

    await asyncio.gather(*(one() for _ in range(concurrency)))
