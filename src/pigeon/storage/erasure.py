"""Erasing an account: every row that names the user or one of their devices.

Tables are found through their foreign keys to ``users`` and ``devices``
(a table another feature adds is covered as soon as it declares its key);
the columns that hold a user or device id without a key (senders, creators,
1:1 chat keys) are handled by name below.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.storage.repositories import drop_queues
from pigeon.storage.schema import (
    attachment_links,
    attachments,
    chat_members,
    chats,
    devices,
    inbox,
    messages,
    metadata,
    sent_messages,
    users,
    verification_codes,
)


class SqlErasureRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def erase_user(self, user_id: str, phone: str) -> list[str]:
        """Delete the user and everything of theirs; returns their device ids.

        Call it after the user left their chats. Messages they sent that are
        still queued go with their queue entries; files they uploaded go
        unless someone else's message carries them (those lose their uploader).
        """
        device_ids = list(
            (
                await self._conn.execute(
                    sa.select(devices.c.id).where(devices.c.user_id == user_id)
                )
            ).scalars()
        )
        # Messages waiting for the user's devices: once those entries go, the
        # ones no one else waits for go too (as an ack would delete them).
        waiting = list(
            (
                await self._conn.execute(
                    sa.select(inbox.c.message_id)
                    .where(inbox.c.device_id.in_(device_ids), inbox.c.message_id.is_not(None))
                    .distinct()
                )
            ).scalars()
        )
        sent = sa.select(messages.c.id).where(messages.c.sender_id == user_id)
        await self._conn.execute(inbox.delete().where(inbox.c.message_id.in_(sent)))
        await self._conn.execute(
            attachment_links.delete().where(attachment_links.c.message_id.in_(sent))
        )
        await self._conn.execute(messages.delete().where(messages.c.sender_id == user_id))
        # Receipts the user caused, still queued for others ("delivered to" or
        # "read by" them): the event names them. Rare enough to afford a scan.
        await self._conn.execute(
            inbox.delete().where(
                inbox.c.event.is_not(None),
                sa.cast(inbox.c.event, sa.Text).contains(user_id, autoescape=True),
            )
        )
        await self._conn.execute(
            sent_messages.delete().where(
                sa.or_(
                    sent_messages.c.sender_id == user_id,
                    sent_messages.c.sender_device_id.in_(device_ids),
                )
            )
        )
        carried = sa.exists().where(attachment_links.c.attachment_id == attachments.c.id)
        await self._conn.execute(
            attachments.update()
            .where(attachments.c.uploader_id == user_id, carried)
            .values(uploader_id=None)
        )
        await self._forget_in_chats(user_id)
        await self._conn.execute(
            verification_codes.delete().where(verification_codes.c.phone == phone)
        )
        await self._delete_by_foreign_keys(user_id, device_ids)
        await drop_queues(self._conn, device_ids)  # no key cascades to them
        queued = sa.exists().where(inbox.c.message_id == messages.c.id)
        for start in range(0, len(waiting), 500):  # bounded IN lists
            await self._conn.execute(
                messages.delete().where(messages.c.id.in_(waiting[start : start + 500]), ~queued)
            )
        await self._conn.execute(users.delete().where(users.c.id == user_id))
        return device_ids

    async def _forget_in_chats(self, user_id: str) -> None:
        """1:1 chats stop pairing the user (the number may come back as someone new)."""
        mine = sa.or_(
            chats.c.direct_key.startswith(f"{user_id}:", autoescape=True),
            chats.c.direct_key.endswith(f":{user_id}", autoescape=True),
        )
        await self._conn.execute(chats.update().where(mine).values(direct_key=None))
        # A chat records its creator, a column that may not be empty of meaning:
        # the creator is no one now.
        await self._conn.execute(
            chats.update().where(chats.c.created_by == user_id).values(created_by="")
        )
        anyone = sa.exists().where(chat_members.c.chat_id == chats.c.id)
        empty = sa.select(chats.c.id).where(~anyone)
        await self._conn.execute(
            inbox.delete().where(
                inbox.c.message_id.in_(
                    sa.select(messages.c.id).where(messages.c.chat_id.in_(empty))
                )
            )
        )
        await self._conn.execute(chats.delete().where(~anyone))

    async def _delete_by_foreign_keys(self, user_id: str, device_ids: list[str]) -> None:
        """Rows of every table whose foreign key names the user or one of their devices."""
        for table in reversed(metadata.sorted_tables):
            if table is users:
                continue
            for column in table.columns:
                for key in column.foreign_keys:
                    if key.column is users.c.id:
                        await self._conn.execute(table.delete().where(column == user_id))
                    elif key.column is devices.c.id and device_ids:
                        await self._conn.execute(table.delete().where(column.in_(device_ids)))
