"""Group commit: what queues during a write goes in together, and each caller gets its answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from app.store.batching import Batcher


class Writes:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(0.01)  # a write takes time; others queue meanwhile
        if self.fail_on in items:
            raise RuntimeError("disk full")
        return [item * 10 for item in items]


async def test_a_lone_write_goes_at_once_and_the_rest_queue_for_the_next() -> None:
    writes = Writes()
    batcher: Batcher[int, int] = Batcher(writes)

    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0.005)  # the first write is under way
    rest = await asyncio.gather(*(batcher.submit(n) for n in range(1, 5)))

    assert await first == 0
    assert rest == [10, 20, 30, 40]
    assert writes.batches == [[0], [1, 2, 3, 4]]


async def test_a_failed_write_fails_its_batch_only() -> None:
    writes = Writes(fail_on=2)
    batcher: Batcher[int, int] = Batcher(writes)

    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0.005)
    failed = await asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3)), return_exceptions=True)
    later = await batcher.submit(7)

    assert await first == 0
    assert all(isinstance(r, RuntimeError) for r in failed)
    assert later == 70


async def test_nothing_is_left_waiting_after_a_failure() -> None:
    batcher: Batcher[int, int] = Batcher(Writes(fail_on=0))
    with pytest.raises(RuntimeError):
        await batcher.submit(0)
    assert await batcher.submit(1) == 10
