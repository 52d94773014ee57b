"""capture indexes: partial, of captures being obtained and of stored files

`ix_captures_due` (state, next_attempt_at) and `ix_captures_expiry` (state, expires_at) held every
capture; like the events' (migration 0009), they give way to partial indexes of the captures
each serves, which a write-back of a capture by its id cannot be planned through.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 07:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: As `tables` has them at this revision: a migration keeps its own copy.
_PENDING = sa.text("state = 'pending'")
_STORED = sa.text("state = 'stored'")


def upgrade() -> None:
    op.drop_index("ix_captures_due", table_name="captures")
    op.drop_index("ix_captures_expiry", table_name="captures")
    for name, column, where in (
        ("ix_captures_pending_due", "next_attempt_at", _PENDING),
        ("ix_captures_stored_expiry", "expires_at", _STORED),
    ):
        op.create_index(
            name,
            "captures",
            ["state", column],
            unique=False,
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    op.drop_index("ix_captures_stored_expiry", table_name="captures")
    op.drop_index("ix_captures_pending_due", table_name="captures")
    op.create_index("ix_captures_expiry", "captures", ["state", "expires_at"], unique=False)
    op.create_index("ix_captures_due", "captures", ["state", "next_attempt_at"], unique=False)
