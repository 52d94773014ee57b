"""A requests-per-second budget per upstream key.

Each key's requests go one at a time, in the order they asked, each at least `1 / rate` seconds
after the one before it went. The next turn is counted from when the previous request really
went, not from when it was booked: had turns been booked ahead, requests whose turns passed while
the event loop was busy elsewhere would all go at once when it came back, a burst over the
budget. So any one-second window holds at most `rate` requests, plus one at its closing edge.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

#: Keys idle this long are forgotten, so keys of ended watches do not pile up.
_FORGET_AFTER = 60.0


@dataclass(slots=True)
class _Turns:
    queue: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: When the next request may go.
    next_at: float = 0.0


class RateLimiter:
    def __init__(self, *, rate: float) -> None:
        self._interval = 1.0 / rate
        self._keys: dict[str | None, _Turns] = {}

    async def wait(self, key: str | None) -> float:
        """Wait for the key's next turn; return how long that took."""
        asked = time.monotonic()
        turns = self._keys.get(key)
        if turns is None:
            if len(self._keys) >= 1024:
                self._forget_idle(asked)
            turns = self._keys[key] = _Turns()
        async with turns.queue:  # asyncio's lock lets waiters in the order they came
            delay = turns.next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            went = time.monotonic()
            turns.next_at = went + self._interval
        return went - asked

    def _forget_idle(self, now: float) -> None:
        for key, turns in list(self._keys.items()):
            if not turns.queue.locked() and turns.next_at < now - _FORGET_AFTER:
                del self._keys[key]
