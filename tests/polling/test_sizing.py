"""Polls in flight are sized from what the relay observes: as many as the upstream's latency
needs to keep watches on schedule, no more than the event loop can take, fewer when the upstream
fails or slows down."""

from __future__ import annotations

import asyncio

from app.polling.sizing import HOLD, WINDOW, LoopLag, PollSizing


class Observed:
    """A sizing fed with windows of polls on a clock the test moves."""

    def __init__(self, *, ceiling: int = 1000, floor: int = 100) -> None:
        self.now = 0.0
        self.lag = 0.0
        self.resized: list[int] = []
        self.sizing = PollSizing(
            ceiling=ceiling,
            floor=floor,
            on_resize=self.resized.append,
            loop_lag=lambda: self.lag,
            clock=lambda: self.now,
        )

    def window(
        self,
        polls: int,
        *,
        seconds: float,
        late: float = 0.0,
        waiting: bool = False,
        failed: int = 0,
    ) -> int:
        """A window of `polls` answered in `seconds` each, sent `late`; the cap after it."""
        for done in range(polls):
            self.sizing.started(late)
            self.sizing.left_waiting(waiting)
            if done == polls - 1:
                self.now += WINDOW
            self.sizing.finished(seconds, failed=done < failed)
        return self.sizing.size


def test_the_cap_starts_at_the_ceiling_and_shrinks_to_the_floor_for_a_nearby_upstream() -> None:
    observed = Observed()
    assert observed.sizing.size == 1000

    sizes = [observed.window(1000, seconds=0.003) for _ in range(12)]

    assert sizes[0] == 500  # by half at most at a time
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 100


def test_a_distant_upstream_keeps_what_littles_law_asks_for() -> None:
    observed = Observed(ceiling=5000)
    # 2,000 polls a second answered in 300 ms: 600 in flight, twice that for bursts.
    sizes = [observed.window(1000, seconds=0.3) for _ in range(20)]

    assert sizes[-1] == 1200


def test_late_polls_waiting_for_slots_grow_the_cap_fourfold_up_to_the_ceiling() -> None:
    observed = Observed(ceiling=1000)
    for _ in range(12):
        observed.window(50, seconds=0.3)
    assert observed.sizing.size == 100

    grown = observed.window(200, seconds=0.3, late=2.0, waiting=True)
    assert grown == 400
    assert observed.window(800, seconds=0.3, late=2.0, waiting=True) == 1000


def test_late_polls_do_not_grow_the_cap_while_the_event_loop_runs_late() -> None:
    """The relay itself is then the bottleneck: more in flight would only queue for it."""
    observed = Observed()
    for _ in range(12):
        observed.window(50, seconds=0.3)
    observed.lag = 0.2

    assert observed.window(200, seconds=0.3, late=2.0, waiting=True) == 100


def test_late_polls_do_not_grow_the_cap_when_a_nearby_upstream_frees_the_slots_at_once() -> None:
    """Answered within milliseconds, a hundred slots carry thousands of polls a second: polls
    that are late wait for something else (the relay's own work), not for slots."""
    observed = Observed()
    for _ in range(12):
        observed.window(1000, seconds=0.003)

    assert observed.window(2000, seconds=0.03, late=2.0, waiting=True) == 100


def test_a_few_late_polls_or_slots_to_spare_are_no_reason_to_grow() -> None:
    observed = Observed()
    for _ in range(12):
        observed.window(50, seconds=0.003)

    assert observed.window(200, seconds=0.003, late=2.0, waiting=False) == 100
    for done in range(200):  # five late polls in two hundred
        observed.sizing.started(2.0 if done < 5 else 0.0)
        observed.sizing.left_waiting(True)
    observed.now += WINDOW
    observed.sizing.finished(0.003, failed=False)
    assert observed.sizing.size == 100


def test_a_failing_upstream_halves_the_cap_which_then_holds_for_a_while() -> None:
    observed = Observed(ceiling=1000, floor=10)
    assert observed.window(100, seconds=0.3, failed=20) == 500
    assert observed.window(100, seconds=0.3, failed=20) == 250

    held = observed.window(100, seconds=0.3, late=2.0, waiting=True)
    assert held <= 250  # late polls grow it no more for a while
    observed.now += HOLD
    assert observed.window(100, seconds=0.3, late=2.0, waiting=True) > held


def test_an_upstream_slowing_under_the_load_halves_the_cap() -> None:
    observed = Observed(ceiling=1000, floor=10)
    observed.window(1000, seconds=0.2)

    assert observed.window(1000, seconds=1.5) == 400  # Little's law took it to 800 first


def test_the_cap_never_leaves_its_floor_and_ceiling() -> None:
    observed = Observed(ceiling=50, floor=100)
    assert observed.sizing.size == 50
    assert observed.window(100, seconds=0.3, late=2.0, waiting=True) == 50
    assert observed.window(100, seconds=0.3, failed=100) == 50


async def test_the_loop_lag_is_the_worst_delay_of_its_timer_since_last_taken() -> None:
    lag = LoopLag(every=0.01)
    lag.start()
    lag.start()  # once is enough
    await asyncio.sleep(0.05)
    assert lag.take() < 0.05
    await asyncio.sleep(0.015)
    blocked_at = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - blocked_at < 0.1:
        pass  # the loop held up, as by a long callback
    await asyncio.sleep(0.02)
    assert lag.take() >= 0.08
    assert lag.take() < 0.05
    lag.stop()
