"""When a stopping relay must be done: `RELAY_SHUTDOWN_GRACE` after it was asked to stop."""

from __future__ import annotations

import time


class StopClock:
    """The moment the relay was asked to stop, from which its one grace is counted.

    A server that marks the signal (`video-webhook-relay serve`) makes the HTTP requests still
    open and the work in flight share that grace, so the process is gone within it whatever
    hangs. Unmarked, the grace starts when the relay itself begins to stop, after the server has
    closed its connections.
    """

    def __init__(self) -> None:
        self._asked_at: float | None = None

    def mark(self) -> None:
        """The first call counts. Safe in a signal handler: it only reads the clock."""
        if self._asked_at is None:
            self._asked_at = time.monotonic()

    def seconds_left(self, grace: float) -> float:
        """What is left of `grace`, counted from the mark (from now, if there was none)."""
        if self._asked_at is None:
            self._asked_at = time.monotonic()
        return max(0.0, self._asked_at + grace - time.monotonic())
