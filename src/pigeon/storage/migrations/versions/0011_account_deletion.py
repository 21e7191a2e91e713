"""An attachment may outlive its uploader's account.

When an account is deleted, the files it uploaded that other people's
messages still carry stay for those messages; they keep no trace of who
uploaded them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attachments") as batch:
        batch.alter_column("uploader_id", existing_type=sa.String(26), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM attachments WHERE uploader_id IS NULL")
    with op.batch_alter_table("attachments") as batch:
        batch.alter_column("uploader_id", existing_type=sa.String(26), nullable=False)
