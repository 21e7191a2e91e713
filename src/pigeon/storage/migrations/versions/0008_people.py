"""Contacts, blocks, privacy settings, profile photos, status updates, recovery emails.

Contacts hold only matched users' ids: the numbers of an uploaded address
book that belong to nobody are never stored.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from pigeon.storage.schema import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("added_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_contacts_owner_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["users.id"], name="fk_contacts_contact_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner_id", "contact_id", name="pk_contacts"),
    )
    op.create_index("ix_contacts_contact_id", "contacts", ["contact_id"])
    op.create_table(
        "blocks",
        sa.Column("blocker_id", ID, nullable=False),
        sa.Column("blocked_id", ID, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["blocker_id"], ["users.id"], name="fk_blocks_blocker_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["blocked_id"], ["users.id"], name="fk_blocks_blocked_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("blocker_id", "blocked_id", name="pk_blocks"),
    )
    op.create_index("ix_blocks_blocked_id", "blocks", ["blocked_id"])
    op.create_table(
        "privacy_settings",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("last_seen", sa.String(8), nullable=False),
        sa.Column("photo", sa.String(8), nullable=False),
        sa.Column("about", sa.String(8), nullable=False),
        sa.Column("statuses", sa.String(16), nullable=False),
        sa.Column("read_receipts", sa.Boolean, nullable=False),
        sa.Column("groups", sa.String(8), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_privacy_settings_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_privacy_settings"),
    )
    op.create_table(
        "profile_photos",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("attachment_id", ID, nullable=False),
        sa.Column("set_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_profile_photos_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["attachment_id"],
            ["attachments.id"],
            name="fk_profile_photos_attachment_id_attachments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_profile_photos"),
    )
    op.create_index("ix_profile_photos_attachment_id", "profile_photos", ["attachment_id"])
    op.create_table(
        "statuses",
        sa.Column("id", ID, nullable=False),
        sa.Column("author_id", ID, nullable=False),
        sa.Column("text", sa.Text(), server_default="", nullable=False),
        sa.Column("background", sa.String(7), nullable=True),
        sa.Column("font", sa.Integer(), nullable=True),
        sa.Column("attachment_id", ID, nullable=True),
        sa.Column("caption", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name="fk_statuses_author_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["attachment_id"],
            ["attachments.id"],
            name="fk_statuses_attachment_id_attachments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_statuses"),
    )
    op.create_index("ix_statuses_author_id", "statuses", ["author_id"])
    op.create_index("ix_statuses_attachment_id", "statuses", ["attachment_id"])
    op.create_index("ix_statuses_expires_at", "statuses", ["expires_at"])
    op.create_table(
        "status_views",
        sa.Column("status_id", ID, nullable=False),
        sa.Column("viewer_id", ID, nullable=False),
        sa.Column("viewed_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["status_id"],
            ["statuses.id"],
            name="fk_status_views_status_id_statuses",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["viewer_id"], ["users.id"], name="fk_status_views_viewer_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("status_id", "viewer_id", name="pk_status_views"),
    )
    op.create_table(
        "status_mutes",
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("muted_id", ID, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_status_mutes_owner_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["muted_id"], ["users.id"], name="fk_status_mutes_muted_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner_id", "muted_id", name="pk_status_mutes"),
    )
    op.create_index("ix_status_mutes_muted_id", "status_mutes", ["muted_id"])
    op.create_table(
        "recovery_emails",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("verified_at", UtcDateTime, nullable=True),
        sa.Column("pending_email", sa.String(254), nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("code_expires_at", UtcDateTime, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reset_code_hash", sa.String(64), nullable=True),
        sa.Column("reset_expires_at", UtcDateTime, nullable=True),
        sa.Column("reset_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_recovery_emails_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_recovery_emails"),
    )
    op.create_table(
        "status_lists",
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("list", sa.String(8), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_status_lists_owner_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_status_lists_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner_id", "list", "user_id", name="pk_status_lists"),
    )
    op.create_index("ix_status_lists_user_id", "status_lists", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_status_lists_user_id", table_name="status_lists")
    op.drop_table("status_lists")
    op.drop_table("recovery_emails")
    op.drop_index("ix_status_mutes_muted_id", table_name="status_mutes")
    op.drop_table("status_mutes")
    op.drop_table("status_views")
    op.drop_index("ix_statuses_expires_at", table_name="statuses")
    op.drop_index("ix_statuses_attachment_id", table_name="statuses")
    op.drop_index("ix_statuses_author_id", table_name="statuses")
    op.drop_table("statuses")
    op.drop_index("ix_profile_photos_attachment_id", table_name="profile_photos")
    op.drop_table("profile_photos")
    op.drop_table("privacy_settings")
    op.drop_index("ix_blocks_blocked_id", table_name="blocks")
    op.drop_table("blocks")
    op.drop_index("ix_contacts_contact_id", table_name="contacts")
    op.drop_table("contacts")
