"""Index attachment links by message.

Deleting a message cascades to its links, and the links' primary key starts
with the attachment: without this index every deleted message (one per ack
that completes a delivery) scanned the whole table for its links.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_attachment_links_message_id", "attachment_links", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_attachment_links_message_id", table_name="attachment_links")
