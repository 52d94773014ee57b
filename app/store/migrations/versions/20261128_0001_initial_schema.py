"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 18:11:55.085360
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=False),
        sa.Column("signing_secret", sa.String(length=200), nullable=False),
        sa.Column("created_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        sa.UniqueConstraint("api_key_hash", name=op.f("uq_clients_api_key_hash")),
    )
    op.create_table(
        "watches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("task_status", sa.String(length=16), nullable=True),
        sa.Column("upstream_status", sa.String(length=64), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("poll_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_polled_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_poll_error", sa.Text(), nullable=True),
        sa.Column("next_poll_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=40), nullable=True),
        sa.Column("lease_expires_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_watches_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watches")),
    )
    with op.batch_alter_table("watches", schema=None) as batch_op:
        batch_op.create_index("ix_watches_client_id_id", ["client_id", "id"], unique=False)
        batch_op.create_index("ix_watches_due", ["state", "next_poll_at"], unique=False)
        batch_op.create_index(
            "uq_watches_live_registration",
            ["client_id", "task_id", "callback_url"],
            unique=True,
            sqlite_where=sa.text("state != 'cancelled'"),
            postgresql_where=sa.text("state != 'cancelled'"),
        )

    op.create_table(
        "events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("watch_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=40), nullable=True),
        sa.Column("lease_expires_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_events_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["watch_id"], ["watches.id"], name=op.f("fk_events_watch_id_watches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_events_watch_id", ["watch_id"], unique=False)

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("attempted_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_attempts_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index("ix_attempts_event_id", ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_event_id")

    op.drop_table("attempts")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_watch_id")
        batch_op.drop_index("ix_events_due")

    op.drop_table("events")
    with op.batch_alter_table("watches", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_watches_live_registration",
            sqlite_where=sa.text("state != 'cancelled'"),
            postgresql_where=sa.text("state != 'cancelled'"),
        )
        batch_op.drop_index("ix_watches_due")
        batch_op.drop_index("ix_watches_client_id_id")

    op.drop_table("watches")
    op.drop_table("clients")
