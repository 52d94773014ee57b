"""Leases: how replicas share the background work without stepping on each other.

Work is claimed with a lease: one UPDATE marks up to N due rows as ours until a deadline and
returns them. On PostgreSQL the inner SELECT takes `FOR UPDATE SKIP LOCKED`, so replicas sharing
the database claim disjoint rows without waiting on each other; SQLite serializes writers and
ignores the clause. If a process dies holding a lease, the rows become due again once it expires.
Every write-back is conditioned on still holding the lease and on the row's state (`still_ours`),
so a cancellation or another replica's reclaim is never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, bindparam, or_, select, update
from sqlalchemy.sql.dml import ReturningUpdate, Update

from app.store.database import transaction
from app.store.tables import captures, events, watches
from app.store.types import UTCDateTime

#: The tables whose rows are claimed with a lease.
LEASED_TABLES = (watches, captures, events)


#: The time of a claim, bound when it runs.
NOW = bindparam("now", type_=UTCDateTime())


def claim(
    table: Table,
    *due: ColumnElement[bool],
    order_by: ColumnElement[Any],
    returning: Sequence[ColumnElement[Any]],
) -> ReturningUpdate[Any]:
    """The claim of up to `limit` rows of `table` that are `due` and not leased, in `order_by`
    order: leased to `owner` until `lease_until`, and returned.

    Claiming is the most frequent statement of all, so each is built once, at import, with `now`,
    `owner`, `lease_until` and `limit` bound when it runs (`claim_params`): building it anew and
    working out its cache key would cost more than running it.
    """
    chosen = (
        select(table.c.id)
        .where(*due, unleased(table))
        .order_by(order_by)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
    return (
        update(table)
        .where(table.c.id.in_(chosen.scalar_subquery()))
        .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("lease_until"))
        .returning(*returning)
    )


def unleased(table: Table) -> ColumnElement[bool]:
    """Rows of `table` that no one holds at `now`: never claimed, released, or left to lapse."""
    return or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at < NOW)


def claim_params(*, owner: str, lease: float, limit: int, now: datetime) -> dict[str, Any]:
    """The parameters every prebuilt claim statement is run with."""
    return {
        "now": now,
        "owner": owner,
        "lease_until": now + timedelta(seconds=lease),
        "limit": limit,
    }


def renewal(table: Table, state: str) -> Update:
    """Extend the leases of the rows `ids` that `owner` still holds in `state` to `lease_until`
    (bound when it runs, `renewal_params`): work that may outlast a short lease keeps it while it
    runs, and a row cancelled or taken over meanwhile is left as it is.

    A row another transaction has locked is skipped, not waited for: that is the write-back of
    the same work, which ends its lease anyway. Waiting for it deadlocked on PostgreSQL under
    load, the renewal and a write-back each holding rows the other wanted (they lock the same
    rows in different orders)."""
    held = (
        select(table.c.id)
        .where(
            table.c.id.in_(bindparam("ids", expanding=True)),
            table.c.lease_owner == bindparam("owner"),
            table.c.state == state,
        )
        .with_for_update(skip_locked=True)
    )
    return (
        update(table).where(table.c.id.in_(held)).values(lease_expires_at=bindparam("lease_until"))
    )


def renewal_params(*, owner: str, ids: Sequence[str], lease: float) -> dict[str, Any]:
    return {
        "ids": list(ids),
        "owner": owner,
        "lease_until": datetime.now(UTC) + timedelta(seconds=lease),
    }


def still_ours(table: Table, state: str) -> tuple[ColumnElement[bool], ...]:
    """A write-back's condition: the row `b_id`, still leased by `b_owner` and still in `state`
    (a cancellation, or another replica that reclaimed it, wins)."""
    return (
        table.c.id == bindparam("b_id"),
        table.c.lease_owner == bindparam("b_owner"),
        table.c.state == state,
    )


@transaction
def release_leases(conn: Connection, *, owner: str) -> None:
    """On a graceful stop, hand back what we claimed but did not finish, so it is due at once."""
    for table in LEASED_TABLES:
        conn.execute(
            update(table)
            .where(table.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
