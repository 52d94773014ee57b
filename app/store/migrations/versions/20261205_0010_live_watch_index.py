"""live watch index: on PostgreSQL, the index that claims polls holds live watches only

`ix_watches_due` (state, next_poll_at) becomes partial on PostgreSQL, so that a write-back of a
watch by its id cannot be planned through it (`tables.watches`). SQLite keeps it whole.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: As `tables.UNFINISHED` has it at this revision: a migration keeps its own copy.
_UNFINISHED = sa.text("state IN ('active', 'capturing', 'notifying')")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_watches_due", table_name="watches")
    op.create_index(
        "ix_watches_due",
        "watches",
        ["state", "next_poll_at"],
        unique=False,
        postgresql_where=_UNFINISHED,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_watches_due", table_name="watches")
    op.create_index("ix_watches_due", "watches", ["state", "next_poll_at"], unique=False)
