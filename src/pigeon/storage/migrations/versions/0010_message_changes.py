"""Send records say what a change to a message needs; messages carry forwards and quotes.

A reaction, an edit or a delete for everyone names a message that may be
gone from every queue. Its send record, kept for the undelivered TTL, is
what the server still knows of it (never its text): who sent it and when,
found by message id, whether it carried attachments (only text can be
edited), how many times it had been forwarded and from which message, and
whether it was deleted. A message carries its forward count and the quote
of a reply (the excerpt its sender's client gave) to its recipients.

Disappearing messages: a chat has a timer (0 for off), and a message sent
while it is on, and its send record, carry the time they expire.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from pigeon.storage.schema import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sent_messages") as batch:
        batch.add_column(
            sa.Column("has_attachments", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("forward_hops", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("deleted_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("forwarded_from", sa.String(26), nullable=True))
        batch.add_column(sa.Column("expires_at", UtcDateTime(), nullable=True))
    op.create_index("ix_sent_messages_message_id", "sent_messages", ["message_id"])
    op.create_index("ix_sent_messages_expires_at", "sent_messages", ["expires_at"])
    op.create_index("ix_sent_messages_forwarded_from", "sent_messages", ["forwarded_from"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("forward_hops", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("quote", sa.JSON, nullable=True))
        batch.add_column(sa.Column("expires_at", UtcDateTime(), nullable=True))
    with op.batch_alter_table("chats") as batch:
        batch.add_column(
            sa.Column("disappear_seconds", sa.Integer, nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("disappear_seconds")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("quote")
        batch.drop_column("forward_hops")
    op.drop_index("ix_sent_messages_expires_at", table_name="sent_messages")
    op.drop_index("ix_sent_messages_forwarded_from", table_name="sent_messages")
    op.drop_index("ix_sent_messages_message_id", table_name="sent_messages")
    with op.batch_alter_table("sent_messages") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("forwarded_from")
        batch.drop_column("deleted_at")
        batch.drop_column("forward_hops")
        batch.drop_column("has_attachments")
