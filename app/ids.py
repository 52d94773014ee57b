"""Identifiers the API hands out."""

from __future__ import annotations

import hashlib
import secrets
import time


def new_id(prefix: str) -> str:
    """A time-ordered id: sorting by id is sorting by creation, which cursor pagination uses."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def event_id(watch_id: str, event_key: str) -> str:
    """Derived, not random: a crash, a restart or a redelivery can never give one event two ids.

    `event_key` names the event within its watch: its type, and a sequence number for the types
    a watch can send more than once.
    """
    digest = hashlib.sha256(f"{watch_id}:{event_key}".encode()).hexdigest()
    return f"msg_{digest[:32]}"
