"""Writing new watches, many registrations to one statement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from app.delivery import webhooks
from app.ids import new_id
from app.states import WatchState
from app.store import watch_queries
from app.store.batching import Batcher
from app.store.database import Database, transaction
from app.store.tables import watches


class Registrations:
    """Writes new watches; registrations that arrive together share one statement (group commit).

    They go in as one `INSERT … ON CONFLICT DO NOTHING`: the unique index on live registrations
    decides duplicates, so two racing registrations of the same task and callback, in one batch or
    not, still yield one watch.

    A new watch is first polled one interval after it was registered, not at once: apps register
    a task as soon as they have submitted it, when it is still queued, so a poll at once would
    only learn that, at the cost of a request, on the path of every registration.

    :param poll_interval: the interval of watches that set none.
    """

    def __init__(self, db: Database, *, poll_interval: float) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._batcher: Batcher[dict[str, Any], bool] = Batcher(self._write)

    async def register(
        self,
        *,
        client_id: str,
        task_id: str,
        callback_url: str,
        metadata: Any,
        expires_after: float,
        event_types: list[str] | None = None,
        poll_interval: float | None = None,
        upstream_api_key_encrypted: str | None = None,
    ) -> tuple[watch_queries.Watch, bool]:
        """Create a watch, or return the live one for the same task and callback (`created`
        False). The watch ends with `watch.expired` if its task has not ended `expires_after`
        seconds from now."""
        now = datetime.now(UTC)
        watch = watch_queries.Watch(
            id=new_id("wat"),
            client_id=client_id,
            task_id=task_id,
            callback_url=callback_url,
            metadata=metadata,
            events=event_types or list(webhooks.DEFAULT_SUBSCRIPTION),
            state=WatchState.ACTIVE,
            task_status=None,
            upstream_status=None,
            progress=None,
            poll_count=0,
            last_polled_at=None,
            last_poll_error=None,
            poll_interval=poll_interval,
            deadline_at=now + timedelta(seconds=expires_after),
            created_at=now,
            updated_at=now,
            event=None,
        )
        row = {
            "id": watch.id,
            "client_id": client_id,
            "task_id": task_id,
            "callback_url": callback_url,
            "metadata": metadata,
            "event_types": event_types,
            "state": watch.state,
            "poll_count": 0,
            "next_poll_at": now + timedelta(seconds=poll_interval or self._poll_interval),
            "poll_interval": poll_interval,
            "deadline_at": watch.deadline_at,
            "upstream_api_key_encrypted": upstream_api_key_encrypted,
            "created_at": now,
            "updated_at": now,
        }
        if await self._batcher.submit(row):
            return watch, True  # as written: reading it back would only cost a round trip
        live = await watch_queries.find_live(
            self._db, client_id=client_id, task_id=task_id, callback_url=callback_url
        )
        return live, False

    async def _write(self, rows: Sequence[dict[str, Any]]) -> list[bool]:
        """Which rows went in (False: a live watch for the same task and callback exists)."""
        inserted = await _insert_new(self._db, rows)
        return [row["id"] in inserted for row in rows]


@transaction
def _insert_new(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    insert_ = (
        postgresql.insert(watches) if conn.dialect.name == "postgresql" else sqlite.insert(watches)
    )
    statement = insert_.on_conflict_do_nothing().returning(watches.c.id)
    return set(conn.execute(statement, list(rows)).scalars())
