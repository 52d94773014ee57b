"""partial indexes of due work: claims that read only what may be due, write-backs by id only

The indexes that claimed work began with `state` and held every row ever written. PostgreSQL,
planning a write-back of a row by its id before it had statistics, could take one of them for it
and read every row of that state for each write-back. They give way to partial indexes of the
rows each serves, which a statement with the state as a parameter cannot use:

- events: pending ones by when they fall due, first attempts and retries apart, and each watch's
  pending events by sequence, which a claim looks up for every event it considers;
- watches, on PostgreSQL: the live ones, by state and when they are due (SQLite keeps the index
  whole: it matches a partial index only to a condition written exactly as the index's);
- captures: those being obtained, by when they are due, and stored files by when they expire.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: As `tables` has them at this revision: a migration keeps its own copy.
_PENDING = sa.text("state = 'pending'")
_FRESH = sa.text("state = 'pending' AND attempts = 0")
_RETRIED = sa.text("state = 'pending' AND attempts > 0")
_UNFINISHED = sa.text("state IN ('active', 'capturing', 'notifying')")
_STORED = sa.text("state = 'stored'")

#: The partial indexes: name, table, columns, condition.
_PARTIAL = (
    ("ix_events_pending_due", "events", ["state", "next_attempt_at"], _PENDING),
    ("ix_events_fresh_due", "events", ["next_attempt_at"], _FRESH),
    ("ix_events_retry_due", "events", ["next_attempt_at"], _RETRIED),
    ("ix_events_pending_watch_id_seq", "events", ["watch_id", "seq"], _PENDING),
    ("ix_captures_pending_due", "captures", ["state", "next_attempt_at"], _PENDING),
    ("ix_captures_stored_expiry", "captures", ["state", "expires_at"], _STORED),
)
#: The whole indexes they replace: name, table, columns.
_WHOLE = (
    ("ix_events_due", "events", ["state", "next_attempt_at"]),
    ("ix_events_first_due", "events", ["state", "attempts", "next_attempt_at"]),
    ("ix_captures_due", "captures", ["state", "next_attempt_at"]),
    ("ix_captures_expiry", "captures", ["state", "expires_at"]),
)


def upgrade() -> None:
    for name, table, _ in _WHOLE:
        op.drop_index(name, table_name=table)
    for name, table, columns, where in _PARTIAL:
        op.create_index(
            name, table, columns, unique=False, sqlite_where=where, postgresql_where=where
        )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_watches_due", table_name="watches")
        op.create_index(
            "ix_watches_due",
            "watches",
            ["state", "next_poll_at"],
            unique=False,
            postgresql_where=_UNFINISHED,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_watches_due", table_name="watches")
        op.create_index("ix_watches_due", "watches", ["state", "next_poll_at"], unique=False)
    for name, table, _, _ in _PARTIAL:
        op.drop_index(name, table_name=table)
    for name, table, columns in _WHOLE:
        op.create_index(name, table, columns, unique=False)
