"""result capture: the captures of succeeded tasks' results, and the relay's own secrets

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "captures",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("inline_data", sa.Text(), nullable=True),
        sa.Column("upstream_body", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=40), nullable=True),
        sa.Column("lease_expires_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("storage_key", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("stored_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_captures_client_id_clients")
        ),
        sa.ForeignKeyConstraint(["id"], ["watches.id"], name=op.f("fk_captures_id_watches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_captures")),
    )
    op.create_index("ix_captures_due", "captures", ["state", "next_attempt_at"], unique=False)
    op.create_index("ix_captures_expiry", "captures", ["state", "expires_at"], unique=False)
    op.create_table(
        "relay_secrets",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("created_at", app.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_relay_secrets")),
    )


def downgrade() -> None:
    op.drop_table("relay_secrets")
    op.drop_index("ix_captures_expiry", table_name="captures")
    op.drop_index("ix_captures_due", table_name="captures")
    op.drop_table("captures")
