"""When a watch is polled next, and when the relay gives up on it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.delivery.bodies import ExpiryReason
from app.polling.policy import REFUSALS_ALLOWED, PollPolicy
from app.upstream import UpstreamError, UpstreamErrorKind, parse_snapshot
from app.work import DueWatch

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = PollPolicy(interval=5, backoff_max=60, not_found_grace=60)


def due(**changes: object) -> DueWatch:
    watch = DueWatch(
        id="wat_1",
        task_id="video_1",
        metadata=None,
        callback_url="https://example.com/hooks",
        client_id="cli_1",
        upstream_status=None,
        due_at=NOW,
        poll_interval=None,
        deadline_at=NOW + timedelta(days=1),
        not_found_since=None,
        consecutive_errors=0,
        consecutive_refusals=0,
        upstream_api_key_encrypted=None,
        task_status=None,
        progress=None,
        event_types=None,
        event_seq=0,
    )
    return replace(watch, **changes)  # type: ignore[arg-type]


def error(kind: UpstreamErrorKind) -> UpstreamError:
    return UpstreamError(kind, "boom", 500)


def test_a_running_task_is_polled_again_after_the_interval() -> None:
    result = POLICY.after_snapshot(due(), parse_snapshot({"status": "queued"}), NOW)

    assert result.next_poll_at == NOW + timedelta(seconds=5)
    assert not result.final


def test_a_poll_made_late_does_not_push_the_next_one_back() -> None:
    late = NOW + timedelta(seconds=0.4)

    result = POLICY.after_snapshot(due(), parse_snapshot({"status": "queued"}), late)

    assert result.next_poll_at == NOW + timedelta(seconds=5)


def test_a_poll_late_by_more_than_half_an_interval_starts_the_schedule_afresh() -> None:
    late = NOW + timedelta(seconds=3)

    result = POLICY.after_snapshot(due(), parse_snapshot({"status": "queued"}), late)

    assert result.next_poll_at == late + timedelta(seconds=5)


def test_a_watch_of_its_own_interval_is_polled_at_that_interval() -> None:
    result = POLICY.after_snapshot(due(poll_interval=30), parse_snapshot({"status": "queued"}), NOW)

    assert result.next_poll_at == NOW + timedelta(seconds=30)


@pytest.mark.parametrize(
    "kind",
    [
        UpstreamErrorKind.SERVER_ERROR,
        UpstreamErrorKind.RATE_LIMITED,
        UpstreamErrorKind.TIMEOUT,
        UpstreamErrorKind.CONNECTION,
        UpstreamErrorKind.BAD_RESPONSE,
    ],
)
def test_a_failing_upstream_is_polled_ever_less_often_up_to_the_cap(
    kind: UpstreamErrorKind,
) -> None:
    waits = []
    watch = due()
    for _ in range(8):
        result = POLICY.after_error(watch, error(kind), "boom", NOW)
        assert result.next_poll_at is not None
        waits.append((result.next_poll_at - NOW).total_seconds())
        watch = replace(watch, consecutive_errors=result.consecutive_errors)

    for attempt, wait in enumerate(waits):
        assert min(60, 5 * 2**attempt) <= wait <= min(60, 5 * 2**attempt * 1.5)
    assert waits[-1] == 60


def test_a_success_ends_the_backoff() -> None:
    result = POLICY.after_snapshot(
        due(consecutive_errors=6), parse_snapshot({"status": "in_progress"}), NOW
    )

    assert result.consecutive_errors == 0
    assert result.next_poll_at == NOW + timedelta(seconds=5)


def test_an_unknown_task_is_polled_at_the_usual_pace_during_the_grace_period() -> None:
    first = POLICY.after_error(due(), error(UpstreamErrorKind.NOT_FOUND), "task_not_exist", NOW)
    later = POLICY.after_error(
        due(not_found_since=NOW - timedelta(seconds=59)),
        error(UpstreamErrorKind.NOT_FOUND),
        "task_not_exist",
        NOW,
    )

    assert first.not_found_since == NOW
    assert first.next_poll_at == NOW + timedelta(seconds=5)
    assert later.not_found_since == NOW - timedelta(seconds=59)
    assert not first.final and not later.final


def test_a_task_unknown_for_the_whole_grace_period_expires() -> None:
    result = POLICY.after_error(
        due(not_found_since=NOW - timedelta(seconds=60)),
        error(UpstreamErrorKind.NOT_FOUND),
        "task_not_exist",
        NOW,
    )

    assert result.expiry is not None
    assert result.expiry.reason is ExpiryReason.TASK_NOT_FOUND


def test_a_failing_upstream_does_not_restart_the_grace_period() -> None:
    since = NOW - timedelta(seconds=30)

    result = POLICY.after_error(
        due(not_found_since=since), error(UpstreamErrorKind.SERVER_ERROR), "502", NOW
    )

    assert result.not_found_since == since


def test_a_refused_key_is_retried_with_backoff_then_the_watch_expires() -> None:
    watch = due()
    results = []
    for _ in range(REFUSALS_ALLOWED):
        result = POLICY.after_error(watch, error(UpstreamErrorKind.UNAUTHORIZED), "401", NOW)
        results.append(result)
        watch = replace(
            watch,
            consecutive_errors=result.consecutive_errors,
            consecutive_refusals=result.consecutive_refusals,
        )

    *retries, last = results
    assert [r.final for r in retries] == [False] * (REFUSALS_ALLOWED - 1)
    assert retries[-1].next_poll_at is not None
    assert retries[-1].next_poll_at >= NOW + timedelta(seconds=10)
    assert last.expiry is not None
    assert last.expiry.reason is ExpiryReason.UPSTREAM_UNAUTHORIZED


def test_refusals_must_be_in_a_row() -> None:
    watch = due(consecutive_errors=2, consecutive_refusals=REFUSALS_ALLOWED - 1)

    result = POLICY.after_error(watch, error(UpstreamErrorKind.SERVER_ERROR), "502", NOW)

    assert result.consecutive_refusals == 0
    assert not result.final


def test_the_next_poll_is_never_after_the_deadline() -> None:
    deadline = NOW + timedelta(seconds=2)

    result = POLICY.after_snapshot(
        due(deadline_at=deadline), parse_snapshot({"status": "queued"}), NOW
    )

    assert result.next_poll_at == deadline


def test_a_watch_past_its_deadline_expires_without_a_poll() -> None:
    assert POLICY.past_deadline(due(), NOW) is None

    result = POLICY.past_deadline(due(deadline_at=NOW), NOW)

    assert result is not None
    assert result.expiry is not None
    assert result.expiry.reason is ExpiryReason.DEADLINE_EXCEEDED
    assert not result.polled
