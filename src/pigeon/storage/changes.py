"""What changes to a message need of storage: its send record, and its queued copies.

Not the hot path: a reaction, an edit or a delete is one statement or two,
through SQLAlchemy on the batch's connection.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.changes import MessageRecord
from pigeon.storage.schema import inbox, messages, sent_messages


class SqlMessageChangeRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def find(self, chat_id: str, message_id: str) -> MessageRecord | None:
        """The send record of ``message_id`` in ``chat_id`` (by the message-id index)."""
        s = sent_messages.c
        found = await self._conn.execute(
            sa.select(
                s.message_id,
                s.chat_id,
                s.seq,
                s.sender_id,
                s.created_at,
                s.has_attachments,
                s.forward_hops,
                s.deleted_at,
                s.expires_at,
            )
            .where(s.message_id == message_id, s.chat_id == chat_id)
            .limit(1)
        )
        row = found.first()
        if row is None:
            return None
        return MessageRecord(
            message_id=row.message_id,
            chat_id=row.chat_id,
            seq=row.seq,
            sender_id=row.sender_id,
            created_at=row.created_at,
            has_attachments=bool(row.has_attachments),
            forward_hops=row.forward_hops,
            deleted=row.deleted_at is not None,
            expires_at=row.expires_at,
        )

    async def last_forward(self, message_id: str, user_id: str, since: datetime) -> datetime | None:
        """When ``user_id`` last forwarded ``message_id`` after ``since`` (None: not since)."""
        s = sent_messages.c
        found = await self._conn.execute(
            sa.select(sa.func.max(s.created_at)).where(
                s.forwarded_from == message_id, s.sender_id == user_id, s.created_at > since
            )
        )
        last: datetime | None = found.scalar()
        return last

    async def mark_deleted(self, message_id: str, at: datetime) -> None:
        await self._conn.execute(
            sa.update(sent_messages)
            .where(sent_messages.c.message_id == message_id)
            .values(deleted_at=at)
        )

    async def drop_queued(self, message_id: str) -> int:
        """Delete the message's undelivered copies and the message itself; how many copies.

        Its attachment links go with it (a cascade), so the media purge frees
        files no other message carries.
        """
        removed = await self._conn.execute(sa.delete(inbox).where(inbox.c.message_id == message_id))
        await self._conn.execute(sa.delete(messages).where(messages.c.id == message_id))
        return int(removed.rowcount or 0)

    async def replace_text(self, message_id: str, text: str) -> None:
        """An edit replaces the text of a still-queued message: the old text is not kept."""
        await self._conn.execute(
            sa.update(messages).where(messages.c.id == message_id).values(body=text)
        )
