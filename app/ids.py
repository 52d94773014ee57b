"""Identifiers the API hands out."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import datetime

_ID = re.compile(r"([a-z]+)_[0-9a-f]{28}")


def new_id(prefix: str) -> str:
    """A time-ordered id: sorting by id is sorting by creation, which cursor pagination uses."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def id_floor(prefix: str, moment: datetime) -> str:
    """The least id `new_id(prefix)` can make at `moment` or later: a bound on ids, and so on
    creation times, that an index on ids can use."""
    return f"{prefix}_{int(moment.timestamp() * 1000):012x}"


def is_id(prefix: str, value: str) -> bool:
    """Whether `value` has the form of an id `new_id(prefix)` hands out.

    Routes answer 404 at once for anything else: it names nothing, and is not worth a lookup (a
    NUL, for one, is more than PostgreSQL can compare).
    """
    found = _ID.fullmatch(value)
    return found is not None and found.group(1) == prefix


def event_id(watch_id: str, event_key: str) -> str:
    """Derived, not random: a crash, a restart or a redelivery can never give one event two ids.

    `event_key` names the event within its watch: its type, and a sequence number for the types
    a watch can send more than once.
    """
    digest = hashlib.sha256(f"{watch_id}:{event_key}".encode()).hexdigest()
    return f"msg_{digest[:32]}"
