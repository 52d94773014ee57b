"""Telling when polling is over capacity, and by how much.

Watches are claimed oldest due first, so when more fall due than a process can poll, none
starves: every poll goes out late by about the same, and that delay grows for as long as the
shortfall lasts. How fast it grows gives the shortfall itself: if polls go out `g` seconds later
with every second that passes, the relay keeps up with `1 - g` of the schedule, and about
`made / (1 - g)` polls fall due a second. A delay that holds steady (a backlog worked off no
faster than it forms, after an outage) is late but not over capacity.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds over which the delay's growth is measured.
SPAN = 10.0
#: Polls going out this many seconds late or more, with a delay that grows, are over capacity.
BEHIND = 1.0
#: A delay growing by less than this many seconds a second is steady.
GROWING = 0.02
#: Seconds between two warnings while over capacity.
WARN_EVERY = 60.0


class CapacityWatch:
    """:param on_share: called with the share of the schedule kept (1.0 when on schedule) once
    a second or so, for the `relay_poll_schedule_share` gauge."""

    def __init__(
        self,
        *,
        on_share: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_share = on_share
        self._clock = clock
        self._second_start: float | None = None
        self._late = 0.0
        self._polls = 0
        #: (when, mean delay of the polls sent in that second, polls sent) per second.
        self._seconds: deque[tuple[float, float, int]] = deque()
        self._warned_at = -WARN_EVERY

    def sent(self, late: float) -> None:
        """A poll went out `late` seconds after it fell due."""
        now = self._clock()
        if self._second_start is None:
            self._second_start = now
        self._late += late
        self._polls += 1
        if now - self._second_start >= 1.0:
            self._close_second(now)

    def _close_second(self, now: float) -> None:
        self._seconds.append((now, self._late / self._polls, self._polls))
        while now - self._seconds[0][0] > SPAN:
            self._seconds.popleft()
        self._second_start = now
        self._late, self._polls = 0.0, 0
        first_at, first_delay, _ = self._seconds[0]
        _, delay, _ = self._seconds[-1]
        if now - first_at < SPAN / 2:
            return
        growth = (delay - first_delay) / (now - first_at)
        share = 1.0 if delay < BEHIND or growth < GROWING else max(0.0, 1.0 - growth)
        self._on_share(share)
        if share < 1.0 and now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            # The first second's polls were made before `first_at`.
            made = sum(polls for _, _, polls in list(self._seconds)[1:]) / (now - first_at)
            self._warn(delay, growth, share, made)

    @staticmethod
    def _warn(delay: float, growth: float, share: float, made: float) -> None:
        due = f"about {made / share:,.0f}" if share > 0 else "far more"
        log.warning(
            "polling is over capacity: polls go out %.1f s after they fall due, %.2f s later "
            "with every second; this relay polls %.0f/s, about %.0f %% of what falls due "
            "(%s/s). Every watch is polled about as late (oldest due first). With a core to "
            "spare, add HTTP processes (RELAY_HTTP_PROCESSES); else add replicas (on "
            "PostgreSQL) or lengthen RELAY_POLL_INTERVAL",
            delay,
            growth,
            made,
            100 * share,
            due,
            extra={"delay_s": round(delay, 1), "polls_per_s": round(made), "share": share},
        )
