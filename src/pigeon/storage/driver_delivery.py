"""The hot path's queries on the database driver itself, for the group committer.

Inside a batch each statement returns in microseconds (SQLite, in-process) or
one round trip (PostgreSQL), and SQLAlchemy's work around it (parameter
processing, result objects, cache lookups, on asyncio a greenlet switch) cost
several times the statement: a fifth of the server's CPU at 1,000 messages/s.
The subclasses run the same statements (``delivery._Statements``) on the
driver's connection and write rows with values converted as SQLAlchemy would
store them (JSON as text, SQLite timestamps as naive UTC text), so rows written
here and rows written through SQLAlchemy read back alike. Everything off the
hot path is inherited from ``SqlDeliveryRepository``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pigeon.domain.chats import Message
from pigeon.domain.delivery import InboxEntry, SentRecord
from pigeon.storage.delivery import SqlDeliveryRepository, json_text

COLUMNS = {
    "messages": (
        "id",
        "chat_id",
        "seq",
        "kind",
        "sender_id",
        "sender_device_id",
        "body",
        "attachments",
        "reply_to",
        "system",
        "created_at",
    ),
    "sent_messages": (
        "sender_device_id",
        "client_message_id",
        "message_id",
        "chat_id",
        "seq",
        "created_at",
    ),
    "inbox": ("device_id", "seq", "message_id", "event", "expires_at"),
}


def stored_json(value: Any) -> str:
    # SQLAlchemy's JSON type stores None as JSON null, not SQL NULL; so do we.
    # Most messages have no attachments and no system payload: skip the encoder.
    if value is None:
        return "null"
    if value == []:
        return "[]"
    return json_text(value)


class DriverDeliveryRepository(SqlDeliveryRepository, abc.ABC):
    """Inserts as plain rows; subclasses say how to run statements and store times."""

    @abc.abstractmethod
    async def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (never empty), in ``COLUMNS[table]`` order."""

    async def _write(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            await self._insert(table, rows)

    def _stored_time(self, value: datetime) -> Any:
        return value

    async def insert_messages(self, batch: Sequence[Message]) -> None:
        await self._write("messages", self._message_rows(batch))

    async def insert_sent(self, records: Sequence[SentRecord]) -> None:
        await self._write("sent_messages", self._sent_rows(records))

    async def insert_inbox(self, entries: Sequence[InboxEntry]) -> None:
        await self._write("inbox", self._inbox_rows(entries))

    def _message_rows(self, batch: Sequence[Message]) -> list[tuple[Any, ...]]:
        return [
            (
                m.id,
                m.chat_id,
                m.seq,
                m.kind.value,
                m.sender_id,
                m.sender_device_id,
                m.body,
                stored_json(m.attachments),
                m.reply_to,
                stored_json(m.system),
                self._stored_time(m.created_at),
            )
            for m in batch
        ]

    def _sent_rows(self, records: Sequence[SentRecord]) -> list[tuple[Any, ...]]:
        return [
            (
                r.sender_device_id,
                r.client_message_id,
                r.message_id,
                r.chat_id,
                r.seq,
                self._stored_time(r.created_at),
            )
            for r in records
        ]

    def _inbox_rows(self, entries: Sequence[InboxEntry]) -> list[tuple[Any, ...]]:
        return [
            (
                e.device_id,
                e.seq,
                e.message.id if e.message else None,
                stored_json(e.event),
                self._stored_time(e.expires_at),
            )
            for e in entries
        ]
