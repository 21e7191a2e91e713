"""Send records name their sender, and are found by chat and seq.

A ``read`` receipt goes only to the senders of the messages it covers. The
messages themselves are gone once delivered; their send records, kept for
the undelivered TTL, still say who sent which seq. Records written before
this migration have no sender: their device's user stands in for it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sent_messages") as batch:
        batch.add_column(sa.Column("sender_id", sa.String(26)))
    op.create_index("ix_sent_messages_chat_id_seq", "sent_messages", ["chat_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_sent_messages_chat_id_seq", table_name="sent_messages")
    with op.batch_alter_table("sent_messages") as batch:
        batch.drop_column("sender_id")
