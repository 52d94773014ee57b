"""Polling over capacity is told apart from polling late, and said with its shortfall."""

from __future__ import annotations

import logging

import pytest

from app.polling.capacity import WARN_EVERY, CapacityWatch


class Polling:
    """A capacity watch fed a number of polls a second, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.shares: list[float] = []
        self.watch = CapacityWatch(on_share=self.shares.append, clock=lambda: self.now)

    def seconds(self, count: int, *, polls: int, late: float, growth: float = 0.0) -> None:
        """`count` seconds of `polls` polls each, sent `late` seconds late, a delay that grows
        by `growth` every second."""
        for _ in range(count):
            for poll in range(polls):
                self.now += 1.0 / polls
                self.watch.sent(late + growth * poll / polls)
            late += growth


def test_polls_on_schedule_keep_the_whole_schedule() -> None:
    polling = Polling()
    polling.seconds(30, polls=100, late=0.1)

    assert polling.shares and set(polling.shares) == {1.0}


def test_a_delay_that_grows_is_over_capacity_and_says_by_how_much(
    caplog: pytest.LogCaptureFixture,
) -> None:
    polling = Polling()
    with caplog.at_level(logging.WARNING, logger="app.polling.capacity"):
        # 4,000 polls a second, each second's polls 0.25 s later than the last's: 75 %.
        polling.seconds(30, polls=4000, late=1.0, growth=0.25)

    assert polling.shares[-1] == pytest.approx(0.75, abs=0.02)
    [warning] = caplog.records
    message = warning.getMessage()
    assert "over capacity" in message
    assert "polls 4000/s" in message and "about 75 %" in message and "about 5,333/s" in message


def test_the_warning_comes_once_a_minute_while_it_lasts(caplog: pytest.LogCaptureFixture) -> None:
    polling = Polling()
    with caplog.at_level(logging.WARNING, logger="app.polling.capacity"):
        polling.seconds(int(2 * WARN_EVERY) + 10, polls=50, late=2.0, growth=0.1)

    assert len(caplog.records) == 3


def test_a_steady_delay_is_a_backlog_worked_off_not_a_shortfall(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After an outage every poll may go out late by the same few seconds: the relay keeps up
    with what falls due; it is not over capacity."""
    polling = Polling()
    with caplog.at_level(logging.WARNING, logger="app.polling.capacity"):
        polling.seconds(30, polls=100, late=4.0)

    assert set(polling.shares) == {1.0}
    assert caplog.records == []
