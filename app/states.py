"""The life cycles of a watch and of its webhook event."""

from __future__ import annotations

import enum


class WatchState(enum.StrEnum):
    ACTIVE = "active"  # polling the upstream
    CAPTURING = "capturing"  # succeeded; its result being captured before the webhook is made
    NOTIFYING = "notifying"  # terminal status seen, webhook being delivered
    COMPLETED = "completed"  # webhook acknowledged with a 2xx
    FAILED = "failed"  # delivery gave up; the event is kept (dead letter)
    CANCELLED = "cancelled"  # the client stopped it


#: The states of a watch that still has work ahead of it.
LIVE_WATCH_STATES = (WatchState.ACTIVE, WatchState.CAPTURING, WatchState.NOTIFYING)


class EventState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CaptureState(enum.StrEnum):
    PENDING = "pending"  # being obtained, with retries
    STORED = "stored"  # stored and served until it expires
    FAILED = "failed"  # given up on; the final event says why
    EXPIRED = "expired"  # past its time to live, the file deleted
