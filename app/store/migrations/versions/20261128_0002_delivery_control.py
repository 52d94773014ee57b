"""Delivery control: event order and rounds, attempt schedule, opt-in events, idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("watches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_types", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("event_seq", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("seq", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("round_start", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.drop_index("ix_events_watch_id")
        batch_op.create_index("ix_events_watch_id_seq", ["watch_id", "seq"], unique=False)
        batch_op.create_index("ix_events_client_id_state", ["client_id", "state"], unique=False)
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_attempt_at", app.store.types.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "idempotency_keys",
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_idempotency_keys_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("client_id", "key", name=op.f("pk_idempotency_keys")),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("next_attempt_at")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_client_id_state")
        batch_op.drop_index("ix_events_watch_id_seq")
        batch_op.create_index("ix_events_watch_id", ["watch_id"], unique=False)
        batch_op.drop_column("round_start")
        batch_op.drop_column("seq")
    with op.batch_alter_table("watches", schema=None) as batch_op:
        batch_op.drop_column("event_seq")
        batch_op.drop_column("event_types")
