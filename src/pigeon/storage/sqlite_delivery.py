"""The hot path's queries on SQLite, straight on the sqlite3 connection.

Inside the group committer's batch (``sqlite_batch``) each statement returns in
microseconds, and SQLAlchemy's work around it (parameter processing, result
objects, cache lookups) cost several times the statement itself: a fifth of
the server's CPU at 1,000 messages/s. Here the same statements run on the
sqlite3 connection with the values converted as SQLAlchemy would store them
(timestamps as naive UTC text, JSON as text), so rows written here and rows
written through SQLAlchemy read back alike. Everything off the hot path is
inherited from ``SqlDeliveryRepository``.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.chats import Message
from pigeon.domain.delivery import InboxEntry, SentRecord
from pigeon.storage.delivery import SqlDeliveryRepository, Statement

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, chat_id, seq, kind, sender_id, sender_device_id, body,"
    " attachments, reply_to, system, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SENT = (
    "INSERT INTO sent_messages (sender_device_id, client_message_id, message_id, chat_id,"
    " seq, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_INBOX = (
    "INSERT INTO inbox (device_id, seq, message_id, event, expires_at) VALUES (?, ?, ?, ?, ?)"
)


@functools.lru_cache(maxsize=256)  # a batch's rows share one time
def stored_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite dialect stores it: naive UTC, microseconds."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _text(statement: Statement) -> str:
    element = statement if isinstance(statement, sa.TextClause) else statement.element
    assert isinstance(element, sa.TextClause)
    return element.text


def _json(value: Any) -> str:
    # SQLAlchemy's JSON type stores None as JSON null, not SQL NULL; so do we.
    return json.dumps(value)


class SqliteDeliveryRepository(SqlDeliveryRepository):
    def __init__(self, conn: AsyncConnection, raw: sqlite3.Connection) -> None:
        super().__init__(conn)
        self._raw = raw

    async def _rows(self, statement: Statement, params: Mapping[str, Any]) -> Sequence[Any]:
        return self._raw.execute(_text(statement), params).fetchall()

    async def _rowcount(self, statement: Statement, params: Mapping[str, Any]) -> int:
        return self._raw.execute(_text(statement), params).rowcount

    def _time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    async def insert_messages(self, batch: Sequence[Message]) -> None:
        self._raw.executemany(
            _INSERT_MESSAGE,
            [
                (
                    m.id,
                    m.chat_id,
                    m.seq,
                    m.kind.value,
                    m.sender_id,
                    m.sender_device_id,
                    m.body,
                    _json(m.attachments),
                    m.reply_to,
                    _json(m.system),
                    stored_time(m.created_at),
                )
                for m in batch
            ],
        )

    async def insert_sent(self, records: Sequence[SentRecord]) -> None:
        self._raw.executemany(
            _INSERT_SENT,
            [
                (
                    r.sender_device_id,
                    r.client_message_id,
                    r.message_id,
                    r.chat_id,
                    r.seq,
                    stored_time(r.created_at),
                )
                for r in records
            ],
        )

    async def insert_inbox(self, entries: Sequence[InboxEntry]) -> None:
        expiries: dict[datetime, str] = {}  # a batch's entries share one expiry
        rows = []
        for e in entries:
            expires = expiries.get(e.expires_at)
            if expires is None:
                expires = expiries[e.expires_at] = stored_time(e.expires_at)
            message_id = e.message.id if e.message else None
            rows.append((e.device_id, e.seq, message_id, _json(e.event), expires))
        self._raw.executemany(_INSERT_INBOX, rows)
