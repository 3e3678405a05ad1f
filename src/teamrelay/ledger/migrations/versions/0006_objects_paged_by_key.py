"""A key's objects are paged from the ownership table: an index in the order lists read them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_relay_objects_key_collection_created",
        "relay_objects",
        ["key_id", "collection", "created_at", "object_id"],
    )
    op.drop_index("ix_relay_objects_key_id", "relay_objects")


def downgrade() -> None:
    op.create_index("ix_relay_objects_key_id", "relay_objects", ["key_id"])
    op.drop_index("ix_relay_objects_key_collection_created", "relay_objects")
