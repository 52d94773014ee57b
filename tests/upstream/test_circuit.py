"""The circuit that pauses all polling while the upstream is failing, and resumes it."""

from __future__ import annotations

from app.upstream.circuit import Circuit, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def circuit(clock: Clock, seen: list[CircuitState] | None = None) -> Circuit:
    return Circuit(
        cooldown=30,
        window=10,
        min_polls=4,
        failure_ratio=0.5,
        clock=clock,
        on_change=(seen.append if seen is not None else lambda _: None),
    )


def test_a_healthy_upstream_gets_every_poll() -> None:
    breaker = circuit(Clock())
    for _ in range(50):
        breaker.record(failed=False)

    assert breaker.state is CircuitState.CLOSED
    assert breaker.allowance(100) == 100


def test_a_few_failures_are_too_few_to_judge() -> None:
    breaker = circuit(Clock())
    for _ in range(3):
        breaker.record(failed=True)

    assert breaker.state is CircuitState.CLOSED


def test_mostly_failing_polls_pause_polling() -> None:
    breaker = circuit(Clock())
    for failed in (False, True, True, False, True):
        breaker.record(failed=failed)

    assert breaker.state is CircuitState.OPEN
    assert breaker.allowance(100) == 0


def test_after_the_cooldown_one_probe_goes_and_its_success_closes_the_circuit() -> None:
    clock = Clock()
    seen: list[CircuitState] = []
    breaker = circuit(clock, seen)
    for _ in range(4):
        breaker.record(failed=True)

    clock.now += 30
    assert breaker.allowance(100) == 1
    assert breaker.allowance(100) == 0, "one probe at a time"
    breaker.record(failed=False)

    assert breaker.allowance(100) == 100
    assert seen == [
        CircuitState.CLOSED,
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    ]


def test_a_failed_probe_pauses_polling_for_another_cooldown() -> None:
    clock = Clock()
    breaker = circuit(clock)
    for _ in range(4):
        breaker.record(failed=True)
    clock.now += 30
    breaker.allowance(1)

    breaker.record(failed=True)

    assert breaker.state is CircuitState.OPEN
    clock.now += 29
    assert breaker.allowance(100) == 0
    clock.now += 1
    assert breaker.allowance(100) == 1


def test_a_probe_that_never_reports_is_replaced_after_a_cooldown() -> None:
    clock = Clock()
    breaker = circuit(clock)
    for _ in range(4):
        breaker.record(failed=True)
    clock.now += 30
    assert breaker.allowance(1) == 1

    clock.now += 30

    assert breaker.allowance(1) == 1
