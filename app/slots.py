"""Slots for the background work in flight: polls, and deliveries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Slots:
    """Up to `size` pieces of work in flight, refilled a handful at a time.

    Refilling means claiming due work from the database. Claiming each time a slot frees would
    spend a query per item, so while work is under way the slots are refilled once a quarter of
    them is free: `on_refill` is called then, if work was left waiting for them. A claim is a
    write transaction, and on SQLite its fixed part (the statement, stepping over the rows still
    in flight, the commit) outweighs the rows it claims, so a quarter at a time costs less per
    row than a smaller handful.
    """

    def __init__(self, size: int, *, on_refill: Callable[[], None]) -> None:
        self._size = size
        self._refill_at = max(1, size // 4)
        self._on_refill = on_refill
        self._busy = 0
        self._waiting = False
        self._tasks: set[asyncio.Task[None]] = set()

    def resize(self, size: int) -> None:
        """Change how many may be in flight. Work under way past a smaller size ends as it
        will; a larger size is filled at once if work was left waiting."""
        grew = size > self._size
        self._size = size
        self._refill_at = max(1, size // 4)
        if grew and self._waiting:
            self._waiting = False
            self._on_refill()

    def to_fill(self) -> int:
        """How many items to claim now: none while work is under way and fewer than a quarter
        of the slots are free, since `on_refill` will ask again when they are."""
        free = max(0, self._size - self._busy)
        if self._busy and free < self._refill_at:
            self._waiting = True
            return 0
        return free

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a slot; it calls `give_back` as soon as the slot may serve another."""
        self._busy += 1
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def more_due(self, waiting: bool) -> None:
        """Whether the last claim left due work waiting for slots."""
        self._waiting = waiting

    def give_back(self) -> None:
        self._busy -= 1
        if self._waiting and self._size - self._busy == self._refill_at:
            self._on_refill()

    async def drain(self, grace: float) -> None:
        """Let the work under way finish (graceful shutdown), for `grace` seconds at most; then
        cancel what is left, which keeps its lease (released or lapsing, the work is done again),
        so that a request that never ends does not keep the process from stopping."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        cut = set(self._tasks)
        for task in cut:
            task.cancel()
        if cut:
            await asyncio.wait(cut)
