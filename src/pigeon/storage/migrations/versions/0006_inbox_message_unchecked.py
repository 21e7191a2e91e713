"""Queue entries refer to their message without a foreign key.

The key checked every entry inserted and, on every delivered message deleted,
looked for entries to cascade to: about 11 ms of PostgreSQL's time in a
saturated batch of 200 messages, for nothing. A message is deleted only when
no entry refers to it any more (the ack that completes its delivery, or the
purge of unreferenced messages), and its entries are inserted in the same
statement as the message itself.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.drop_constraint("fk_inbox_message_id_messages", type_="foreignkey")


def downgrade() -> None:
    op.execute(
        "DELETE FROM inbox WHERE message_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM messages WHERE messages.id = inbox.message_id)"
    )
    with op.batch_alter_table("inbox") as batch:
        batch.create_foreign_key(
            "fk_inbox_message_id_messages", "messages", ["message_id"], ["id"], ondelete="CASCADE"
        )
