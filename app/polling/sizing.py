"""How many polls to keep in flight, worked out from what the relay observes.

Little's law: the requests in flight equal the rate they are made at times the time each takes.
To keep every watch on schedule the relay must poll at the rate watches fall due, so it needs
that rate times the upstream's latency in flight: 2,000 polls a second at 5 ms is 10, at 300 ms
it is 600. A fixed cap fits one upstream and starves the other, so the cap is resized once a
second from the last second's throughput and latency, with headroom for bursts:

- while due watches were left waiting for a slot, the cap doubles (the throughput seen is then
  the cap's, not the demand's, so Little's law alone would never grow it);
- otherwise it follows Little's law, shrinking by a quarter at most per second;
- when the upstream fails (a tenth of the polls or more: 429, 5xx, timeouts, refused
  connections) or slows down under the relay's own load (latency three times its best of the
  last minute), the cap halves and holds for a few seconds: more requests would make it worse.

The cap never leaves [`floor`, `ceiling`]; the ceiling is `RELAY_POLL_CONCURRENCY`, a bound on
memory and connections, and with `RELAY_UPSTREAM_RPS` also what that budget lets through.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

#: Seconds between two resizings.
WINDOW = 1.0
#: In flight beyond what Little's law asks, for the bursts within a second.
HEADROOM = 2.0
#: A share of failed polls in a window that calls for backing off.
FAILING_SHARE = 0.1
#: Latency this many times its best of the last minute is the upstream slowing under load.
SLOW_FACTOR = 3.0
#: Windows the best latency is taken over.
BASELINE_WINDOWS = 60
#: Seconds the cap holds after backing off, before it may grow again.
HOLD = 5.0


class PollSizing:
    """:param ceiling: the most polls in flight ever.
    :param floor: the fewest: enough to notice when more are needed.
    :param on_resize: called with the new cap whenever it changes.
    """

    def __init__(
        self,
        *,
        ceiling: int,
        floor: int = 8,
        on_resize: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.size = min(max(self.floor, 64), ceiling)
        self._on_resize = on_resize
        self._clock = clock
        self._window_start = clock()
        self._done = 0
        self._failed = 0
        self._seconds = 0.0
        self._waiting = False
        self._hold_until = 0.0
        self._latencies: deque[float] = deque(maxlen=BASELINE_WINDOWS)

    def left_waiting(self, waiting: bool) -> None:
        """Whether the last claim left due watches waiting for a slot."""
        self._waiting = self._waiting or waiting

    def finished(self, seconds: float, *, failed: bool) -> None:
        """A poll's request ended after `seconds`; `failed` if the upstream failed to answer."""
        self._done += 1
        self._failed += failed
        self._seconds += seconds
        now = self._clock()
        if now - self._window_start >= WINDOW:
            self._resize(now)

    def _resize(self, now: float) -> None:
        elapsed = now - self._window_start
        latency = self._seconds / self._done
        throughput = self._done / elapsed
        self._latencies.append(latency)
        if self._failed >= FAILING_SHARE * self._done or latency > SLOW_FACTOR * min(
            self._latencies
        ):
            size = self.size // 2
            self._hold_until = now + HOLD
        elif self._waiting and now >= self._hold_until:
            size = self.size * 2
        else:
            needed = math.ceil(throughput * latency * HEADROOM)
            size = max(needed, math.ceil(self.size * 0.75)) if needed < self.size else self.size
        size = min(max(size, self.floor), self.ceiling)
        self._window_start = now
        self._done = self._failed = 0
        self._seconds = 0.0
        self._waiting = False
        if size != self.size:
            self.size = size
            self._on_resize(size)
