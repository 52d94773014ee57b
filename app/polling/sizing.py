"""How many polls to keep in flight, worked out from what the relay observes.

Little's law: the requests in flight equal the rate they are made at times the time each takes.
To keep every watch on schedule the relay must poll at the rate watches fall due, so it needs
that rate times the upstream's latency in flight: 2,000 polls a second at 5 ms is 10, at 300 ms
it is 600. A fixed cap fits one upstream and starves the other, so the cap is resized every half
second, between a floor and `RELAY_POLL_CONCURRENCY` (the ceiling, a bound on memory and
connections; with `RELAY_UPSTREAM_RPS`, also what that budget lets through). It starts at the
ceiling, since only due work is ever claimed, and then:

- **shrinks to Little's law**, by half at most each time (by a quarter when it is close), on
  the busiest throughput of the last two polling intervals (polls fall due in waves: watches
  registered together are polled together, and the cap must fit the wave, not the lull after
  it) and the upstream's own latency, twice over for bursts. The upstream's own latency is the
  quickest answer of the last minute: an answer's measured time also holds whatever it waited
  for the relay's event loop.
- **grows** fourfold when polls run late (a tenth of a window's polls sent half a second or more
  after they were due) while due watches wait for a slot, but only while the slots are what
  holds them: Little's law asks for as many as there are (the upstream's own latency keeps them
  busy), and the event loop keeps time. Otherwise the relay itself is the bottleneck, and more
  polls in flight would only queue for its loop and hold up deliveries: with a nearby upstream
  the cap stays at the floor however late polls run.
- **halves** when the upstream fails (a tenth of the polls or more: 429, 5xx, timeouts, refused
  connections) or slows down under the load (answers three times slower than its best, and
  slower by a quarter of a second), and holds for a few seconds: more requests would make it
  worse.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

#: Seconds between two resizings.
WINDOW = 0.5
#: Windows whose busiest throughput Little's law is applied to: two polling intervals of 5 s.
RECENT_WINDOWS = 20
#: Windows the upstream's own latency (the quickest answer) is taken over: a minute.
BASELINE_WINDOWS = 120
#: In flight beyond what Little's law asks, for the bursts within a window.
HEADROOM = 2.0
#: How much the cap grows in one window while due watches wait for a slot.
GROWTH = 4
#: Seconds the event loop may run late before more polls in flight would only queue for it.
LAG_LIMIT = 0.05
#: Polls sent this many seconds after they were due are late (the work of a tick, claimed in
#: one go, goes out within about half a second at the default tick)...
LATE = 0.5
#: ...and polling is behind when this share of a window's polls are.
LATE_SHARE = 0.1
#: A share of failed polls in a window that calls for backing off.
FAILING_SHARE = 0.1
#: Answers this many times slower than the upstream's best, and slower by `SLOW_MARGIN` seconds,
#: are the upstream slowing under the load.
SLOW_FACTOR = 3.0
SLOW_MARGIN = 0.25
#: Seconds the cap holds after backing off, before it may grow again.
HOLD = 5.0


class LoopLag:
    """How late the event loop runs what falls due on it: the worst delay of a timer that rings
    every `every` seconds, since it was last taken. Polls' answers, deliveries and API requests
    all queue for the loop; when it runs late, the relay itself is what holds them up."""

    def __init__(self, every: float = 0.05) -> None:
        self._every = every
        self._worst = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        """Start ringing, unless ringing already."""
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self._every
        self._timer = loop.call_at(self._due, self._ring)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def take(self) -> float:
        worst, self._worst = self._worst, 0.0
        return worst

    def _ring(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._worst = max(self._worst, now - self._due)
        self._due = now + self._every
        self._timer = loop.call_at(self._due, self._ring)


class PollSizing:
    """:param ceiling: the most polls in flight ever (`RELAY_POLL_CONCURRENCY`).
    :param floor: the fewest: enough for a nearby upstream.
    :param loop_lag: the worst delay of the event loop since it was last asked (`LoopLag`).
    :param on_resize: called with the new cap whenever it changes.
    """

    def __init__(
        self,
        *,
        ceiling: int,
        floor: int,
        on_resize: Callable[[int], None],
        loop_lag: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.size = ceiling
        self._on_resize = on_resize
        self._loop_lag = loop_lag
        self._clock = clock
        self._window_start: float | None = None  # from the first poll, not from the start
        self._done = 0
        self._failed = 0
        self._seconds = 0.0
        self._quickest = math.inf
        self._started = self._late = 0
        self._waiting = False
        self._hold_until = 0.0
        self._throughputs: deque[float] = deque(maxlen=RECENT_WINDOWS)
        self._quickests: deque[float] = deque(maxlen=BASELINE_WINDOWS)

    def started(self, late: float) -> None:
        """A poll was sent `late` seconds after it was due."""
        if self._window_start is None:
            self._window_start = self._clock()
        self._started += 1
        self._late += late > LATE

    def left_waiting(self, waiting: bool) -> None:
        """Whether the last claim left due watches waiting for a slot."""
        self._waiting = self._waiting or waiting

    def finished(self, seconds: float, *, failed: bool) -> None:
        """A poll's request ended after `seconds`; `failed` if the upstream failed to answer."""
        self._done += 1
        self._failed += failed
        self._seconds += seconds
        self._quickest = min(self._quickest, seconds)
        now = self._clock()
        start = self._window_start
        if start is not None and now - start >= WINDOW:
            self._resize(now, now - start)

    def _resize(self, now: float, elapsed: float) -> None:
        latency = self._seconds / self._done
        self._throughputs.append(self._done / elapsed)
        self._quickests.append(self._quickest)
        own = min(self._quickests)
        slowing = latency > SLOW_FACTOR * own and latency - own > SLOW_MARGIN
        lag = self._loop_lag()
        behind = self._late > LATE_SHARE * self._started
        queued = lag > LAG_LIMIT
        needed = math.ceil(max(self._throughputs) * own * HEADROOM)
        if self._failed >= FAILING_SHARE * self._done or slowing:
            size = self.size // 2
            self._hold_until = now + HOLD
        elif behind and self._waiting and not queued and needed >= self.size:
            size = max(self.size * GROWTH, needed) if now >= self._hold_until else self.size
        elif needed < self.size:
            size = max(needed, math.ceil(self.size * (0.5 if needed < self.size // 2 else 0.75)))
        else:
            size = self.size
        size = min(max(size, self.floor), self.ceiling)
        self._window_start = now
        self._done = self._failed = 0
        self._seconds = 0.0
        self._quickest = math.inf
        self._started = self._late = 0
        self._waiting = False
        if size != self.size:
            self.size = size
            self._on_resize(size)
