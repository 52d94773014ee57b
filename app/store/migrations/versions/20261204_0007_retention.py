"""retention: the indexes that find what has outlived its time without walking a table

Finished watches by the time they finished (`updated_at` of a watch that is over), as a partial
index: active watches, whose `updated_at` changes at every poll, are not in it, so polling does
not pay for it. Idempotency keys by their time of creation.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: As `tables.FINISHED` has it at this revision: a migration keeps its own copy.
_FINISHED = sa.text("state NOT IN ('active', 'capturing', 'notifying')")


def upgrade() -> None:
    op.create_index(
        "ix_watches_finished",
        "watches",
        ["updated_at"],
        unique=False,
        sqlite_where=_FINISHED,
        postgresql_where=_FINISHED,
    )
    op.create_index(
        "ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_index("ix_watches_finished", table_name="watches")
