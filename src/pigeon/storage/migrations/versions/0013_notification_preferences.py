"""Notification preferences, muted chats, and the users a message mentions.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from pigeon.storage.schema import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "notification_settings",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("push", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("previews", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_notification_settings_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_notification_settings"),
    )
    op.create_table(
        "chat_mutes",
        sa.Column("chat_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("muted_until", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_chat_mutes_chat_id_chats", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_chat_mutes_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("chat_id", "user_id", name="pk_chat_mutes"),
    )
    op.create_index("ix_chat_mutes_user_id", "chat_mutes", ["user_id"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("mentions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("mentions")
    op.drop_index("ix_chat_mutes_user_id", table_name="chat_mutes")
    op.drop_table("chat_mutes")
    op.drop_table("notification_settings")
