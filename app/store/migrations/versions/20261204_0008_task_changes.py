"""task changes: a task's course for the operator console, and the indexes of its overview

`task_changes` keeps a row per status a poll found changed. Attempts by time and events by when
they were delivered let the overview count the last hour's and day's deliveries without walking
either table; watches by the app and task id, the search by the start of a task id.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.store.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("watch_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("task_status", sa.String(length=16), nullable=False),
        sa.Column("upstream_status", sa.String(length=64), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("detection_lag", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["watch_id"], ["watches.id"], name=op.f("fk_task_changes_watch_id_watches")
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_task_changes_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_changes")),
    )
    op.create_index("ix_task_changes_watch_id", "task_changes", ["watch_id"], unique=False)
    op.create_index("ix_task_changes_at", "task_changes", ["at"], unique=False)
    op.create_index("ix_attempts_attempted_at", "attempts", ["attempted_at"], unique=False)
    op.create_index(
        "ix_watches_client_id_task_id",
        "watches",
        ["client_id", "task_id"],
        postgresql_ops={"task_id": "text_pattern_ops"},
    )
    op.create_index("ix_events_delivered_at", "events", ["delivered_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_watches_client_id_task_id", table_name="watches")
    op.drop_index("ix_events_delivered_at", table_name="events")
    op.drop_index("ix_attempts_attempted_at", table_name="attempts")
    op.drop_index("ix_task_changes_at", table_name="task_changes")
    op.drop_index("ix_task_changes_watch_id", table_name="task_changes")
    op.drop_table("task_changes")
