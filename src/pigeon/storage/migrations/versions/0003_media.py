"""Media: blobs, attachments, the messages that carry them, resumable uploads.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from pigeon.storage.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_blobs"),
    )
    op.create_table(
        "attachments",
        sa.Column("id", ID, nullable=False),
        sa.Column("uploader_id", ID, nullable=False),
        sa.Column("blob_hash", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mime_type", sa.String(127), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["blob_hash"], ["blobs.hash"], name="fk_attachments_blob_hash_blobs"
        ),
        sa.ForeignKeyConstraint(
            ["uploader_id"],
            ["users.id"],
            name="fk_attachments_uploader_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
    )
    op.create_index("ix_attachments_blob_hash", "attachments", ["blob_hash"])
    op.create_index("ix_attachments_expires_at", "attachments", ["expires_at"])
    op.create_table(
        "attachment_links",
        sa.Column("attachment_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("chat_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["attachment_id"],
            ["attachments.id"],
            name="fk_attachment_links_attachment_id_attachments",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_attachment_links_message_id_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("attachment_id", "message_id", name="pk_attachment_links"),
    )
    op.create_index("ix_attachment_links_chat_id", "attachment_links", ["chat_id"])
    op.create_table(
        "uploads",
        sa.Column("id", ID, nullable=False),
        sa.Column("uploader_id", ID, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("offset", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["uploader_id"], ["users.id"], name="fk_uploads_uploader_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
    )
    op.create_index("ix_uploads_expires_at", "uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_expires_at", table_name="uploads")
    op.drop_table("uploads")
    op.drop_index("ix_attachment_links_chat_id", table_name="attachment_links")
    op.drop_table("attachment_links")
    op.drop_index("ix_attachments_expires_at", table_name="attachments")
    op.drop_index("ix_attachments_blob_hash", table_name="attachments")
    op.drop_table("attachments")
    op.drop_table("blobs")
