"""The per-key budget of upstream requests per second."""

from __future__ import annotations

import asyncio
import itertools
import time

from app.upstream.ratelimit import RateLimiter

RATE = 50
INTERVAL = 1 / RATE
#: How much earlier than its turn a request may seem to go: the clock is read twice.
SLACK = 0.002


async def went(limiter: RateLimiter, key: str | None) -> tuple[str | None, float]:
    await limiter.wait(key)
    return key, time.monotonic()


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_requests_with_one_key_go_one_interval_apart_in_the_order_they_asked() -> None:
    limiter = RateLimiter(rate=RATE)

    # gather starts them, and so they ask, in this order
    results = await asyncio.gather(*(went(limiter, "sk-a") for _ in range(5)))

    times = [at for _, at in results]
    assert times == sorted(times)
    assert min(gaps(times)) >= INTERVAL - SLACK


async def test_each_key_has_its_own_budget() -> None:
    limiter = RateLimiter(rate=1)
    await limiter.wait("sk-a")

    waited = [await limiter.wait(key) for key in ("sk-b", None, "sk-c")]

    assert max(waited) < 0.5


async def test_an_idle_key_does_not_save_up_a_burst() -> None:
    limiter = RateLimiter(rate=RATE)
    await limiter.wait("sk-a")
    await asyncio.sleep(5 * INTERVAL)

    results = await asyncio.gather(*(went(limiter, "sk-a") for _ in range(4)))

    assert min(gaps([at for _, at in results])) >= INTERVAL - SLACK


async def test_turns_missed_while_the_event_loop_was_busy_do_not_go_at_once() -> None:
    """Requests that were waiting while the loop was held up still go one interval apart."""
    limiter = RateLimiter(rate=RATE)
    waiting = asyncio.gather(*(went(limiter, "sk-a") for _ in range(5)))
    await asyncio.sleep(0)  # all of them have asked

    time.sleep(5 * INTERVAL)  # noqa: ASYNC251 - the loop is held up past every turn

    results = await waiting
    assert min(gaps([at for _, at in results])) >= INTERVAL - SLACK


async def test_the_wait_is_reported() -> None:
    limiter = RateLimiter(rate=RATE)

    first, second = [await limiter.wait("sk-a") for _ in range(2)]

    assert first < INTERVAL / 2
    assert second >= INTERVAL - SLACK
