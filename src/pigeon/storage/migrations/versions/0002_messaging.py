"""Messaging: chats, members, messages, per-device delivery queues.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from pigeon.storage.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("last_seen_at", UtcDateTime(), nullable=True))
    op.create_table(
        "chats",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("direct_key", sa.String(53), nullable=True),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chats"),
        sa.UniqueConstraint("direct_key", name="uq_chats_direct_key"),
    )
    op.create_table(
        "chat_members",
        sa.Column("chat_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("joined_at", UtcDateTime(), nullable=False),
        sa.Column("read_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_chat_members_chat_id_chats", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_chat_members_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("chat_id", "user_id", name="pk_chat_members"),
    )
    op.create_index("ix_chat_members_user_id", "chat_members", ["user_id"])
    op.create_table(
        "messages",
        sa.Column("id", ID, nullable=False),
        sa.Column("chat_id", ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("sender_id", ID, nullable=True),
        sa.Column("sender_device_id", ID, nullable=True),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("reply_to", ID, nullable=True),
        sa.Column("system", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_messages_chat_id_chats", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("chat_id", "seq", name="uq_messages_chat_id_seq"),
    )
    op.create_table(
        "sent_messages",
        sa.Column("sender_device_id", ID, nullable=False),
        sa.Column("client_message_id", sa.String(64), nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("chat_id", ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sender_device_id", "client_message_id", name="pk_sent_messages"),
    )
    op.create_index("ix_sent_messages_created_at", "sent_messages", ["created_at"])
    op.create_table(
        "inbox",
        sa.Column("device_id", ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("message_id", ID, nullable=True),
        sa.Column("event", sa.JSON(), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_inbox_device_id_devices", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_inbox_message_id_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "seq", name="pk_inbox"),
    )
    op.create_index("ix_inbox_message_id", "inbox", ["message_id"])
    op.create_index("ix_inbox_expires_at", "inbox", ["expires_at"])
    op.create_table(
        "inbox_counters",
        sa.Column("device_id", ID, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_inbox_counters_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name="pk_inbox_counters"),
    )
    op.execute("INSERT INTO inbox_counters (device_id, last_seq) SELECT id, 0 FROM devices")


def downgrade() -> None:
    op.drop_table("inbox_counters")
    op.drop_index("ix_inbox_expires_at", table_name="inbox")
    op.drop_index("ix_inbox_message_id", table_name="inbox")
    op.drop_table("inbox")
    op.drop_index("ix_sent_messages_created_at", table_name="sent_messages")
    op.drop_table("sent_messages")
    op.drop_table("messages")
    op.drop_index("ix_chat_members_user_id", table_name="chat_members")
    op.drop_table("chat_members")
    op.drop_table("chats")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_seen_at")
