"""Slots: work in flight is capped, and refilled a handful at a time, once."""

from __future__ import annotations

import asyncio

from app.slots import Slots


async def _hold(slots: Slots, release: asyncio.Event) -> None:
    await release.wait()
    slots.give_back()


async def test_while_work_is_under_way_a_refill_waits_for_a_quarter_of_the_slots() -> None:
    refills: list[int] = []
    slots = Slots(20, on_refill=lambda: refills.append(1))
    releases = [asyncio.Event() for _ in range(20)]
    assert slots.to_fill() == 20
    for release in releases:
        slots.start(_hold(slots, release))
    slots.more_due(True)

    assert slots.to_fill() == 0
    for release in releases[:4]:
        release.set()
    await asyncio.sleep(0.01)
    assert (slots.to_fill(), refills) == (0, [])
    releases[4].set()
    await asyncio.sleep(0.01)
    assert (slots.to_fill(), refills) == (5, [1])


async def test_work_that_ends_together_asks_for_one_refill() -> None:
    refills: list[int] = []
    slots = Slots(10, on_refill=lambda: refills.append(1))
    release = asyncio.Event()
    for _ in range(10):
        slots.start(_hold(slots, release))
    slots.more_due(True)

    release.set()
    await slots.drain(grace=1)

    assert refills == [1]
    assert slots.to_fill() == 10


async def test_nothing_is_asked_for_when_no_work_was_left_waiting() -> None:
    refills: list[int] = []
    slots = Slots(10, on_refill=lambda: refills.append(1))
    release = asyncio.Event()
    for _ in range(3):
        slots.start(_hold(slots, release))
    slots.more_due(False)

    release.set()
    await slots.drain(grace=1)

    assert refills == []


async def test_slots_grown_while_work_waits_are_filled_at_once_and_shrunk_ones_let_work_end() -> (
    None
):
    refills: list[int] = []
    slots = Slots(4, on_refill=lambda: refills.append(1))
    release = asyncio.Event()
    for _ in range(4):
        slots.start(_hold(slots, release))
    slots.more_due(True)
    assert slots.to_fill() == 0

    slots.resize(12)
    assert refills == [1]
    assert slots.to_fill() == 8
    for _ in range(8):
        slots.start(_hold(slots, release))

    slots.resize(6)  # twelve under way: none is cut short, none more is claimed
    assert slots.to_fill() == 0
    release.set()
    await asyncio.sleep(0.01)
    assert slots.to_fill() == 6
