"""Queue entries refer to their device without a foreign key.

The key's check ran a query for every entry inserted: about a third of the
PostgreSQL time of a batch's insert (0.46-0.72 ms of 2.0-2.2 ms for 73
messages and their 146 entries). The guarantee it gave holds without it: a
batch writes entries only for devices whose queue counter it has locked, and
deleting a device deletes its counter (that key stays), which waits for such
a batch to commit; whoever deletes a device then deletes its entries in the
same transaction (``DeviceRepository.delete``, ``delete_expired``, account
erasure).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.drop_constraint("fk_inbox_device_id_devices", type_="foreignkey")


def downgrade() -> None:
    op.execute(
        "DELETE FROM inbox WHERE NOT EXISTS"
        " (SELECT 1 FROM devices WHERE devices.id = inbox.device_id)"
    )
    with op.batch_alter_table("inbox") as batch:
        batch.create_foreign_key(
            "fk_inbox_device_id_devices", "devices", ["device_id"], ["id"], ondelete="CASCADE"
        )
