"""The per-key budget of upstream requests per second."""

from __future__ import annotations

from app.upstream.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_requests_with_one_key_are_spaced_in_the_order_they_asked() -> None:
    limiter = RateLimiter(rate=4, clock=Clock())

    assert [limiter.reserve("sk-a") for _ in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_each_key_has_its_own_budget() -> None:
    limiter = RateLimiter(rate=2, clock=Clock())

    assert limiter.reserve("sk-a") == 0.0
    assert limiter.reserve("sk-b") == 0.0
    assert limiter.reserve(None) == 0.0
    assert limiter.reserve("sk-a") == 0.5


def test_an_idle_key_does_not_save_up_a_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, clock=clock)
    limiter.reserve("sk-a")

    clock.now += 60

    assert [limiter.reserve("sk-a") for _ in range(3)] == [0.0, 0.5, 1.0]
