"""Push registrations: where a device without a live connection is woken up.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from pigeon.storage.schema import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "push_registrations",
        sa.Column("device_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False, server_default=""),
        sa.Column("p256dh", sa.Text(), nullable=False, server_default=""),
        sa.Column("auth", sa.Text(), nullable=False, server_default=""),
        sa.Column("token", sa.Text(), nullable=False, server_default=""),
        sa.Column("topic", sa.Text(), nullable=False, server_default=""),
        sa.Column("sandbox", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("pushed_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("next_at", UtcDateTime(), nullable=True),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_push_registrations_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name="pk_push_registrations"),
    )


def downgrade() -> None:
    op.drop_table("push_registrations")
