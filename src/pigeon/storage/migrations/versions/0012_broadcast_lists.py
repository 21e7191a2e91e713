"""Broadcast lists (a broadcast checks the contacts table of 0008).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from pigeon.storage.schema import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "broadcast_lists",
        sa.Column("id", ID, primary_key=True),
        sa.Column("owner_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_broadcast_lists_owner_id", "broadcast_lists", ["owner_id"])
    op.create_table(
        "broadcast_recipients",
        sa.Column(
            "list_id",
            ID,
            sa.ForeignKey("broadcast_lists.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_broadcast_recipients_user_id", "broadcast_recipients", ["user_id"])


def downgrade() -> None:
    op.drop_table("broadcast_recipients")
    op.drop_table("broadcast_lists")
