"""The queries of result capture: claiming the results due to be obtained, recording each try,
and finding the stored files, to serve them and to delete them once they expire.

A watch whose task succeeded waits in `capturing` while its capture is pending; the capture's
end (stored, or given up on) moves it to `notifying` with its final event, in one transaction,
only while the watch is still capturing and the capture still ours: a cancellation wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from app.delivery import webhooks
from app.states import CaptureState, WatchState
from app.store import leases
from app.store.database import transaction
from app.store.prepared import Prepared
from app.store.tables import captures, constant, events, watches
from app.work import CapturedWatch, CaptureOutcome, DueCapture

_CLAIMED_COLUMNS = (
    captures.c.id,
    captures.c.client_id,
    captures.c.source_url,
    captures.c.inline_data,
    captures.c.attempts,
    captures.c.deadline_at,
)

#: Captures being obtained, and stored files, as their partial indexes know them
#: (`tables.PENDING_CAPTURE`).
PENDING = captures.c.state == constant(CaptureState.PENDING)
_STORED = captures.c.state == constant(CaptureState.STORED)
#: Claim the pending captures that are due, soonest first.
_CLAIM = leases.claim(
    captures,
    PENDING,
    captures.c.next_attempt_at <= leases.NOW,
    order_by=captures.c.next_attempt_at,
    returning=_CLAIMED_COLUMNS,
)
#: The task and upstream key of the watches `ids`, which a capture fetches with.
_TASKS = select(watches.c.id, watches.c.task_id, watches.c.upstream_api_key_encrypted).where(
    watches.c.id.in_(bindparam("ids", expanding=True))
)
#: Extend the leases of the captures `ids` that are still ours and pending.
_RENEW = leases.renewal(captures, CaptureState.PENDING)
#: Record a try that failed and is due again, while the capture is still ours and pending.
_RECORD_RETRY = Prepared(
    update(captures)
    .where(*leases.still_ours(captures, CaptureState.PENDING))
    .values(
        attempts=captures.c.attempts + 1,
        next_attempt_at=bindparam("b_retry_at"),
        error_code=bindparam("b_error_code"),
        error_message=bindparam("b_error_message"),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
    )
)
#: Lock the watches `ids` with what their final event is made from, to learn which still wait.
_LOCK_WATCHES = (
    select(
        watches.c.id,
        watches.c.task_id,
        watches.c.metadata,
        watches.c.client_id,
        watches.c.callback_url,
        watches.c.event_seq,
        watches.c.state,
    )
    .where(watches.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update()
)
#: The captures `ids` that are still ours and pending, with the task the upstream described.
_HELD_CAPTURES = select(captures.c.id, captures.c.upstream_body).where(
    captures.c.id.in_(bindparam("ids", expanding=True)),
    captures.c.lease_owner == bindparam("owner"),
    captures.c.state == CaptureState.PENDING,
)
#: End a capture: stored or failed, its inline data dropped.
_END_CAPTURE = Prepared(
    update(captures)
    .where(*leases.still_ours(captures, CaptureState.PENDING))
    .values(
        state=bindparam("b_state"),
        attempts=captures.c.attempts + 1,
        next_attempt_at=None,
        inline_data=None,
        storage_key=bindparam("b_key"),
        content_type=bindparam("b_content_type"),
        size_bytes=bindparam("b_size"),
        sha256=bindparam("b_sha256"),
        stored_at=bindparam("b_stored_at"),
        expires_at=bindparam("b_expires_at"),
        error_code=bindparam("b_error_code"),
        error_message=bindparam("b_error_message"),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
    )
)
#: Move a watch whose capture ended on to delivering its final event.
_TO_NOTIFYING = Prepared(
    update(watches)
    .where(watches.c.id == bindparam("b_id"), watches.c.state == WatchState.CAPTURING)
    .values(
        state=WatchState.NOTIFYING,
        event_seq=watches.c.event_seq + 1,
        updated_at=bindparam("b_now"),
    )
)
#: Put final events in the outbox.
_NEW_EVENTS = Prepared(insert(events))
#: Stored files past their time to live.
_EXPIRED_FILES = (
    select(captures.c.id, captures.c.storage_key)
    .where(_STORED, captures.c.expires_at <= bindparam("now"))
    .order_by(captures.c.expires_at)
    .limit(bindparam("limit"))
)
#: Mark the captures `ids` as expired once their files are deleted.
_MARK_EXPIRED = (
    update(captures)
    .where(
        captures.c.id.in_(bindparam("ids", expanding=True)),
        captures.c.state == CaptureState.STORED,
    )
    .values(state=CaptureState.EXPIRED, updated_at=bindparam("now"))
)
#: The stored file of the watch `id`, to serve it.
_STORED_FILE = select(
    captures.c.storage_key,
    captures.c.content_type,
    captures.c.size_bytes,
    captures.c.sha256,
    captures.c.expires_at,
).where(captures.c.id == bindparam("id"), captures.c.state == CaptureState.STORED)


def new_capture_row(
    watch_id: str,
    client_id: str,
    source_url: str | None,
    upstream_body: Any,
    now: datetime,
    deadline_at: datetime,
) -> dict[str, Any]:
    """The capture of a task seen to succeed, due at once; a `data:` URI is kept until decoded."""
    inline = source_url if source_url is not None and source_url.startswith("data:") else None
    return {
        "id": watch_id,
        "client_id": client_id,
        "state": CaptureState.PENDING,
        "source_url": None if inline is not None else source_url,
        "inline_data": inline,
        "upstream_body": webhooks.without_inline_files(upstream_body),
        "attempts": 0,
        "next_attempt_at": now,
        "deadline_at": deadline_at,
        "created_at": now,
        "updated_at": now,
    }


@transaction
def claim_due_captures(
    conn: Connection, *, owner: str, lease: float, limit: int
) -> list[DueCapture]:
    now = datetime.now(UTC)
    claimed = conn.execute(
        _CLAIM, leases.claim_params(owner=owner, lease=lease, limit=limit, now=now)
    ).all()
    if not claimed:
        return []
    tasks = {row.id: row for row in conn.execute(_TASKS, {"ids": [row.id for row in claimed]})}
    return [
        DueCapture(
            id=row.id,
            client_id=row.client_id,
            source_url=row.source_url,
            inline_data=row.inline_data,
            attempts=row.attempts,
            deadline_at=row.deadline_at,
            task_id=tasks[row.id].task_id,
            upstream_api_key_encrypted=tasks[row.id].upstream_api_key_encrypted,
        )
        for row in claimed
    ]


@transaction
def renew_leases(conn: Connection, *, owner: str, ids: Sequence[str], lease: float) -> None:
    """Keep the captures `ids`, whose downloads are still running, ours for `lease` more
    seconds; one that was cancelled or taken over meanwhile is left as it is."""
    conn.execute(_RENEW, leases.renewal_params(owner=owner, ids=ids, lease=lease))


@transaction
def record_captures(
    conn: Connection, *, owner: str, outcomes: Sequence[CaptureOutcome]
) -> list[bool]:
    """Write a batch of tries back; for each, whether it still counted.

    A capture that ended gives its watch the final event, in the same transaction, unless the
    watch was cancelled or another owner took the capture meanwhile: then False, and a file the
    try stored is nobody's (the caller deletes it).
    """
    now = datetime.now(UTC)
    retries = [o for o in outcomes if not o.final]
    _RECORD_RETRY.executemany(
        conn,
        [
            {
                "b_id": o.capture.id,
                "b_owner": owner,
                "b_now": now,
                "b_retry_at": o.retry_at,
                "b_error_code": o.error.code if o.error else None,
                "b_error_message": o.error.message if o.error else None,
            }
            for o in retries
        ],
    )
    ended = [o for o in outcomes if o.final]
    held = _end_captures(conn, owner, ended, now) if ended else set()
    return [not o.final or o.capture.id in held for o in outcomes]


def _end_captures(
    conn: Connection, owner: str, ended: Sequence[CaptureOutcome], now: datetime
) -> set[str]:
    """Locks the watches first, as polls do, so that a cancellation cannot come in between."""
    ids = [o.capture.id for o in ended]
    waiting = {
        row.id: CapturedWatch(
            row.id, row.task_id, row.metadata, row.client_id, row.callback_url, row.event_seq
        )
        for row in conn.execute(_LOCK_WATCHES, {"ids": ids})
        if row.state == WatchState.CAPTURING
    }
    bodies = {
        row.id: row.upstream_body
        for row in conn.execute(_HELD_CAPTURES, {"ids": ids, "owner": owner})
    }
    held = [o for o in ended if o.capture.id in waiting and o.capture.id in bodies]
    _END_CAPTURE.executemany(conn, [_ended_row(o, owner, now) for o in held])
    _TO_NOTIFYING.executemany(conn, [{"b_id": o.capture.id, "b_now": now} for o in held])
    _NEW_EVENTS.executemany(
        conn,
        [
            webhooks.captured_outbox_row(
                waiting[o.capture.id],
                bodies[o.capture.id],
                o.report or webhooks.CaptureReport(None, o.error),
                now,
            )
            for o in held
        ],
    )
    return {o.capture.id for o in held}


def _ended_row(outcome: CaptureOutcome, owner: str, now: datetime) -> dict[str, Any]:
    stored, error = outcome.stored, outcome.error
    return {
        "b_id": outcome.capture.id,
        "b_owner": owner,
        "b_now": now,
        "b_state": CaptureState.STORED if stored is not None else CaptureState.FAILED,
        "b_key": stored.key if stored else None,
        "b_content_type": stored.content_type if stored else None,
        "b_size": stored.size_bytes if stored else None,
        "b_sha256": stored.sha256 if stored else None,
        "b_stored_at": stored.stored_at if stored else None,
        "b_expires_at": stored.expires_at if stored else None,
        "b_error_code": error.code if error else None,
        "b_error_message": error.message if error else None,
    }


@dataclass(frozen=True, slots=True)
class ServedFile:
    key: str
    content_type: str
    size_bytes: int
    sha256: str
    expires_at: datetime


@transaction
def stored_file(conn: Connection, *, watch_id: str) -> ServedFile | None:
    """The file of the watch, if one is stored and not yet deleted."""
    row = conn.execute(_STORED_FILE, {"id": watch_id}).one_or_none()
    return None if row is None else ServedFile(*row)


@transaction
def expired_files(conn: Connection, *, limit: int) -> list[tuple[str, str]]:
    """Up to `limit` stored files past their time to live: (watch id, storage key)."""
    rows = conn.execute(_EXPIRED_FILES, {"now": datetime.now(UTC), "limit": limit})
    return [(row.id, row.storage_key) for row in rows]


@transaction
def mark_expired(conn: Connection, *, ids: Sequence[str]) -> None:
    conn.execute(_MARK_EXPIRED, {"ids": list(ids), "now": datetime.now(UTC)})
