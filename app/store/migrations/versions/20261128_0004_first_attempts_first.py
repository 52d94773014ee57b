"""first attempts first: an index to claim events never tried before ahead of retries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 21:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_first_due", "events", ["state", "attempts", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_events_first_due", table_name="events")
