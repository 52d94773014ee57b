"""A requests-per-second budget per upstream key.

Each key's requests are spaced at least `1 / rate` seconds apart, in the order they asked (a
virtual schedule rather than a bucket of tokens), so no burst ever exceeds the rate: any one-second
window holds at most `rate` requests, plus one at its closing edge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Keys idle this long are forgotten, so keys of ended watches do not pile up.
_FORGET_AFTER = 60.0


class RateLimiter:
    def __init__(self, *, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next_slot: dict[str | None, float] = {}

    def reserve(self, key: str | None) -> float:
        """Book the key's next free slot; return how many seconds from now it is."""
        now = self._clock()
        slot = max(now, self._next_slot.get(key, now))
        self._next_slot[key] = slot + self._interval
        if len(self._next_slot) > 1024:
            self._forget_idle(now)
        return slot - now

    async def wait(self, key: str | None) -> float:
        """Wait for the key's next free slot; return how long that took."""
        delay = self.reserve(key)
        if delay > 0:
            await asyncio.sleep(delay)
        return delay

    def _forget_idle(self, now: float) -> None:
        for key, slot in list(self._next_slot.items()):
            if slot < now - _FORGET_AFTER:
                del self._next_slot[key]
