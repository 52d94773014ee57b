"""A circuit breaker shared by all polls of the upstream.

Per-watch backoff alone still lets ten thousand watches each try once more; when most recent
polls fail, the circuit opens and polling pauses as a whole. After `cooldown` seconds it lets a
single probe through (half-open): a success closes it, a failure opens it for another cooldown.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Circuit:
    """
    :param window: how many recent polls are judged.
    :param min_polls: fewer polls than this are too few to judge the upstream by.
    :param failure_ratio: the share of failures in the window that opens the circuit.
    :param on_change: told every new state, for metrics.
    """

    def __init__(
        self,
        *,
        cooldown: float,
        window: int = 20,
        min_polls: int = 10,
        failure_ratio: float = 0.5,
        on_change: Callable[[CircuitState], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooldown = cooldown
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._min_polls = min_polls
        self._failure_ratio = failure_ratio
        self._on_change = on_change
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._opened_at = 0.0
        self._probe_started_at: float | None = None
        on_change(self._state)

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._cooldown:
            self._move(CircuitState.HALF_OPEN)
        return self._state

    def allowance(self, wanted: int) -> int:
        """How many polls may start now: all, none, or the one probe of a half-open circuit.

        A probe that never reports (its watch needed no request after all) is replaced after a
        cooldown, so the circuit cannot stay half-open for good.
        """
        state = self.state
        if state is CircuitState.CLOSED:
            return wanted
        now = self._clock()
        probe_free = self._probe_started_at is None or (
            now - self._probe_started_at >= self._cooldown
        )
        if state is CircuitState.HALF_OPEN and probe_free and wanted > 0:
            self._probe_started_at = now
            return 1
        return 0

    def record(self, *, failed: bool) -> None:
        if self._state is CircuitState.HALF_OPEN:
            self._probe_started_at = None
            if failed:
                self._open("the probe after the pause failed")
            else:
                self._outcomes.clear()
                self._move(CircuitState.CLOSED)
                log.warning(
                    "upstream circuit closed", extra={"cause": "the upstream answers again"}
                )
            return
        if self._state is CircuitState.OPEN:
            return  # a poll started before the circuit opened
        self._outcomes.append(failed)
        failures = sum(self._outcomes)
        if len(self._outcomes) >= self._min_polls and failures >= self._failure_ratio * len(
            self._outcomes
        ):
            self._open(f"{failures} of the last {len(self._outcomes)} polls failed")

    def _open(self, cause: str) -> None:
        log.warning(
            "upstream circuit opened",
            extra={"cause": cause, "pause_seconds": self._cooldown},
        )
        self._opened_at = self._clock()
        self._move(CircuitState.OPEN)

    def _move(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            self._on_change(state)
