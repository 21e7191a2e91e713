"""A clientMessageId is unique per sender device *and chat*, not per device.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sent_messages") as batch:
        batch.drop_constraint("pk_sent_messages", type_="primary")
        batch.create_primary_key(
            "pk_sent_messages", ["sender_device_id", "chat_id", "client_message_id"]
        )


def downgrade() -> None:
    # Rows that differ only by chat would collide under the old key: keep the first.
    op.execute(
        "DELETE FROM sent_messages WHERE EXISTS (SELECT 1 FROM sent_messages AS other "
        "WHERE other.sender_device_id = sent_messages.sender_device_id "
        "AND other.client_message_id = sent_messages.client_message_id "
        "AND other.message_id < sent_messages.message_id)"
    )
    with op.batch_alter_table("sent_messages") as batch:
        batch.drop_constraint("pk_sent_messages", type_="primary")
        batch.create_primary_key("pk_sent_messages", ["sender_device_id", "client_message_id"])
