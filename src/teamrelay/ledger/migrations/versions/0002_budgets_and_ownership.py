"""Budgets (spent and reserved per key and window) and object ownership.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from teamrelay.ledger.models import UTCDateTime

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "relay_budgets",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("period", sa.String(8), primary_key=True),
        sa.Column("starts", sa.String(16), primary_key=True),
        sa.Column("unit", sa.String(8), primary_key=True),
        sa.Column("spent", sa.Double(), nullable=False),
        sa.Column("reserved", sa.Double(), nullable=False),
    )
    op.create_table(
        "relay_objects",
        sa.Column("object_id", sa.String(256), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_relay_objects_key_id", "relay_objects", ["key_id"])


def downgrade() -> None:
    op.drop_table("relay_objects")
    op.drop_table("relay_budgets")
