"""Identifiers the API hands out."""

from __future__ import annotations

import hashlib
import secrets
import time


def new_id(prefix: str) -> str:
    """A time-ordered id: sorting by id is sorting by creation, which cursor pagination uses."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def event_id(watch_id: str, event_type: str) -> str:
    """Derived, not random: a crash, a restart or a redelivery can never give one event two ids."""
    digest = hashlib.sha256(f"{watch_id}:{event_type}".encode()).hexdigest()
    return f"msg_{digest[:32]}"
