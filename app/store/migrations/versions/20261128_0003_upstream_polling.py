"""upstream polling: per-watch interval, deadline, key, grace period and backoff counters

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 18:40:00.000000
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import app.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Watches that existed before deadlines get the default one (`RELAY_WATCH_TIMEOUT`).
_DEFAULT_TIMEOUT = timedelta(hours=24)


def upgrade() -> None:
    with op.batch_alter_table("watches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("poll_interval", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("deadline_at", app.store.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("not_found_since", app.store.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "consecutive_errors", sa.Integer(), server_default=sa.text("0"), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "consecutive_refusals", sa.Integer(), server_default=sa.text("0"), nullable=False
            )
        )
        batch_op.add_column(sa.Column("upstream_api_key_encrypted", sa.Text(), nullable=True))

    watches = sa.table(
        "watches",
        sa.column("id", sa.String()),
        sa.column("created_at", app.store.types.UTCDateTime(timezone=True)),
        sa.column("deadline_at", app.store.types.UTCDateTime(timezone=True)),
    )
    connection = op.get_bind()
    existing = connection.execute(sa.select(watches.c.id, watches.c.created_at)).all()
    if existing:
        connection.execute(
            sa.update(watches)
            .where(watches.c.id == sa.bindparam("b_id"))
            .values(deadline_at=sa.bindparam("b_deadline")),
            [{"b_id": row.id, "b_deadline": row.created_at + _DEFAULT_TIMEOUT} for row in existing],
        )

    with op.batch_alter_table("watches", schema=None) as batch_op:
        batch_op.alter_column(
            "deadline_at",
            existing_type=app.store.types.UTCDateTime(timezone=True),
            nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("watches", schema=None) as batch_op:
        batch_op.drop_column("upstream_api_key_encrypted")
        batch_op.drop_column("consecutive_refusals")
        batch_op.drop_column("consecutive_errors")
        batch_op.drop_column("not_found_since")
        batch_op.drop_column("deadline_at")
        batch_op.drop_column("poll_interval")
