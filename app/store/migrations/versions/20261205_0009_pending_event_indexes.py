"""pending event indexes: claims that read pending events only, in the order they fall due

`ix_events_due` (state, next_attempt_at) and `ix_events_first_due` (state, attempts,
next_attempt_at) kept an entry for every event ever written, and PostgreSQL, planning a
write-back by id before it had statistics, could take either for it. They give way to partial
indexes of pending events: by when they fall due, first attempts and retries apart, and each
watch's pending events by sequence, which a claim looks up for every event it considers
(`outbox.DUE`).

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


def upgrade() -> None:
    op.drop_index("ix_events_first_due", table_name="events")
    op.drop_index("ix_events_due", table_name="events")
    for name, columns, where in (
        ("ix_events_pending_due", ["state", "next_attempt_at"], _PENDING),
        ("ix_events_fresh_due", ["next_attempt_at"], _FRESH),
        ("ix_events_retry_due", ["next_attempt_at"], _RETRIED),
        ("ix_events_pending_watch_id_seq", ["watch_id", "seq"], _PENDING),
    ):
        op.create_index(
            name, "events", columns, unique=False, sqlite_where=where, postgresql_where=where
        )


def downgrade() -> None:
    op.drop_index("ix_events_pending_watch_id_seq", table_name="events")
    op.drop_index("ix_events_retry_due", table_name="events")
    op.drop_index("ix_events_fresh_due", table_name="events")
    op.drop_index("ix_events_pending_due", table_name="events")
    op.create_index("ix_events_due", "events", ["state", "next_attempt_at"], unique=False)
    op.create_index(
        "ix_events_first_due", "events", ["state", "attempts", "next_attempt_at"], unique=False
    )
