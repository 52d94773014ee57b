"""A relay sizes the polls it keeps in flight to its upstream: as many as a distant one's
latency needs, no more than a nearby one needs (`relay_poll_slots`)."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.polling.poller import SLOTS_FLOOR
from tests.conftest import RelayClient, RelayFactory
from tests.servers import serve
from tests.test_metrics import scrape

#: Each polled once a second (`RELAY_MIN_POLL_INTERVAL`): 150 polls a second.
WATCHES = 150
SLOW_ANSWER = 1.0


def upstream_answering_after(seconds: float) -> Starlette:
    """Every task is in progress; every answer takes `seconds`."""

    async def query(request: Request) -> JSONResponse:
        await asyncio.sleep(seconds)
        return JSONResponse({"status": "in_progress", "progress": 10, "format": "mp4"})

    return Starlette(routes=[Route("/v1/video/generations/{task_id}", query)])


async def slots_after_a_while(relay: RelayClient) -> float:
    callback = "http://127.0.0.1:9/hooks"
    await asyncio.gather(*(relay.register(f"video_{n}", callback) for n in range(WATCHES)))
    await asyncio.sleep(6)
    return (await scrape(relay))("relay_poll_slots")


async def test_a_distant_upstream_gets_as_many_polls_in_flight_as_its_latency_needs(
    start_relay: RelayFactory,
) -> None:
    async with (
        serve(upstream_answering_after(SLOW_ANSWER)) as url,
        start_relay(nebula_base_url=url) as relay,
    ):
        slots = await slots_after_a_while(relay)

    # Little's law: about 150 polls a second at 1 s is 150 in flight, twice that for bursts,
    # on the busiest wave: more than a nearby upstream needs, far less than the ceiling.
    assert SLOTS_FLOOR < slots < 1000


async def test_a_nearby_upstream_settles_at_the_floor(start_relay: RelayFactory) -> None:
    """A machine busy elsewhere can hold the relay back long enough to look like a distant
    upstream for a moment; the answers' own time soon brings the slots back down."""
    async with (
        serve(upstream_answering_after(0)) as url,
        start_relay(nebula_base_url=url) as relay,
    ):
        slots = await slots_after_a_while(relay)
        async with asyncio.timeout(30):
            while slots != SLOTS_FLOOR:
                await asyncio.sleep(1)
                slots = (await scrape(relay))("relay_poll_slots")

    assert slots == SLOTS_FLOOR
