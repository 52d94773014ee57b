"""client apps: revocation, secret rotation with an overlap, unique names, counting live watches

Signing secrets are stored encrypted from now on, and an encrypted secret can outgrow the
former 200 characters, hence `Text` (on PostgreSQL: SQLite never enforced the length). The
secrets already stored in clear cannot be encrypted here (the key is not in the database): the
relay encrypts them at its next start (`client_apps.encrypt_secrets_in_clear`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        # SQLite does not enforce a VARCHAR's length, and changing a column's type there means
        # copying the table, which the rows referring to it forbid (`tables.py` keeps the
        # declaration SQLite has).
        op.alter_column(
            "clients",
            "signing_secret",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
    op.add_column(
        "clients",
        sa.Column("revoked_at", app.store.types.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column("clients", sa.Column("previous_signing_secret", sa.Text(), nullable=True))
    op.add_column(
        "clients",
        sa.Column(
            "previous_secret_until", app.store.types.UTCDateTime(timezone=True), nullable=True
        ),
    )
    op.create_index("uq_clients_name", "clients", ["name"], unique=True)
    op.create_index("ix_watches_client_id_state", "watches", ["client_id", "state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_watches_client_id_state", table_name="watches")
    op.drop_index("uq_clients_name", table_name="clients")
    op.drop_column("clients", "previous_secret_until")
    op.drop_column("clients", "previous_signing_secret")
    op.drop_column("clients", "revoked_at")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "clients",
            "signing_secret",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
