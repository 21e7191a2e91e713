"""The delivery queue on SQLite: every statement, and ``SqliteDelivery`` running them.

Lists travel as one JSON parameter read by ``json_each``, so each statement
has one fixed text whatever the batch holds (an ``IN`` list with one
placeholder per item would be a new statement, compiled anew, per batch
shape). Timestamps are stored as SQLAlchemy's SQLite dialect stores them:
naive UTC text with microseconds.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from pigeon.domain.chats import Message
from pigeon.domain.delivery import (
    AckedMessage,
    AckOutcome,
    BatchFacts,
    InboxEntry,
    SendKey,
    SentRecord,
)
from pigeon.storage.delivery import rows
from pigeon.storage.delivery.executors import Executor

FIND_SENT = (
    "SELECT s.sender_device_id, s.chat_id, s.client_message_id, s.message_id, s.seq,"
    " s.created_at"
    # CROSS JOIN: SQLite then walks the keys and probes the primary key.
    " FROM json_each(?) AS k CROSS JOIN sent_messages AS s"
    " ON s.sender_device_id = k.value ->> 0 AND s.chat_id = k.value ->> 1"
    " AND s.client_message_id = k.value ->> 2"
)
MEMBER_DEVICES = (
    "SELECT m.chat_id, m.user_id, d.id FROM chat_members AS m"
    " LEFT JOIN devices AS d ON d.user_id = m.user_id"
    " WHERE m.chat_id IN (SELECT value FROM json_each(?)) ORDER BY m.chat_id, m.user_id, d.id"
)
# Each batch with sends reads its chats' disappearing timers (almost always none).
DISAPPEARING = (
    "SELECT id, disappear_seconds FROM chats"
    " WHERE id IN (SELECT value FROM json_each(?)) AND disappear_seconds > 0"
)
# Blocks of a batch's senders by members of its 1:1 chats: starts from the
# blocks index on blocked_id, which nearly always finds nothing.
DIRECT_BLOCKS = (
    "SELECT m.chat_id, b.blocker_id, b.blocked_id FROM blocks AS b"
    " CROSS JOIN chat_members AS m ON m.user_id = b.blocker_id"
    " JOIN chats AS c ON c.id = m.chat_id AND c.kind = 'direct'"
    " WHERE b.blocked_id IN (SELECT value FROM json_each(?))"
    " AND m.chat_id IN (SELECT value FROM json_each(?))"
)
DEVICES_OF = (
    "SELECT user_id, id FROM devices WHERE user_id IN (SELECT value FROM json_each(?)) ORDER BY id"
)


def _allocate(table: str, key: str) -> str:
    return (
        "WITH a AS MATERIALIZED (SELECT key AS k, value AS n FROM json_each(?))"
        f" UPDATE {table} SET last_seq = last_seq + (SELECT n FROM a WHERE a.k = {table}.{key})"
        f" WHERE {key} IN (SELECT k FROM a) RETURNING {key}, last_seq"
    )


ALLOCATE_CHAT_SEQS = _allocate("chats", "id")
ALLOCATE_INBOX_SEQS = _allocate("inbox_counters", "device_id")
# The JSON is read once into a table, not once per row the DELETE visits.
REMOVE_ACKED = (
    "WITH a AS MATERIALIZED (SELECT key AS device_id, value AS up_to FROM json_each(?))"
    " DELETE FROM inbox WHERE device_id IN (SELECT device_id FROM a)"
    " AND seq <= (SELECT up_to FROM a WHERE a.device_id = inbox.device_id)"
    " RETURNING device_id, message_id"
)
ACKED_MESSAGES = (
    "SELECT id, chat_id, seq, sender_id FROM messages WHERE id IN (SELECT value FROM json_each(?))"
)
DELETE_DELIVERED = (
    "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))"
    " AND NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.message_id = messages.id)"
)
SENDERS_BETWEEN = (
    "SELECT DISTINCT COALESCE(s.sender_id, d.user_id) FROM sent_messages AS s"
    " LEFT JOIN devices AS d ON s.sender_id IS NULL AND d.id = s.sender_device_id"
    " WHERE s.chat_id = ? AND s.seq > ? AND s.seq <= ?"
)
PENDING = (
    f"SELECT i.seq, i.event, i.expires_at, {rows.MESSAGE_COLUMNS}"
    " FROM inbox AS i LEFT JOIN messages AS m ON m.id = i.message_id"
    " WHERE i.device_id = ? AND i.seq > ? ORDER BY i.seq LIMIT ?"
)
PURGE_QUEUED = "DELETE FROM inbox WHERE expires_at <= ?"
PURGE_UNQUEUED_MESSAGES = (
    "DELETE FROM messages"
    " WHERE NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.message_id = messages.id)"
)
# Old records, and those of disappearing messages past their time (by index each).
PURGE_SEND_RECORDS = (
    "DELETE FROM sent_messages WHERE created_at < ? OR (expires_at IS NOT NULL AND expires_at <= ?)"
)
INSERT = {
    table: f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for table, columns in rows.COLUMNS.items()
}


@functools.lru_cache(maxsize=256)  # a batch's rows share one time
def stored_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite dialect stores it: naive UTC, microseconds."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def loaded_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def loaded_json(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


class SqliteDelivery:
    """``DeliveryRepository`` on SQLite, through whichever executor it is given."""

    __slots__ = ("_db",)

    def __init__(self, executor: Executor) -> None:
        self._db = executor

    async def find_sent(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], SentRecord]:
        if not keys:
            return {}
        found = await self._db.fetch(FIND_SENT, (rows.json_text([list(k) for k in keys]),))
        return {
            (device_id, chat_id, client_id): SentRecord(
                device_id, client_id, message_id, chat_id, seq, loaded_time(created_at)
            )
            for device_id, chat_id, client_id, message_id, seq, created_at in found
        }

    async def member_devices(self, chat_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        if not chat_ids:
            return {}
        found = await self._db.fetch(MEMBER_DEVICES, (rows.json_text(list(chat_ids)),))
        return rows.group_member_devices(found)

    async def disappearing(self, chat_ids: Sequence[str]) -> dict[str, int]:
        if not chat_ids:
            return {}
        found = await self._db.fetch(DISAPPEARING, (rows.json_text(list(chat_ids)),))
        return {chat_id: seconds for chat_id, seconds in found}

    async def direct_blocks(
        self, chat_ids: Sequence[str], sender_ids: Sequence[str]
    ) -> set[tuple[str, str, str]]:
        if not chat_ids or not sender_ids:
            return set()
        params = (rows.json_text(list(sender_ids)), rows.json_text(list(chat_ids)))
        return {
            (c, blocker, blocked)
            for c, blocker, blocked in await self._db.fetch(DIRECT_BLOCKS, params)
        }

    async def batch_facts(
        self, chat_ids: Sequence[str], send_keys: Sequence[SendKey], sender_ids: Sequence[str]
    ) -> BatchFacts:
        # Four statements: on SQLite a statement costs microseconds, not a round trip.
        return BatchFacts(
            members=await self.member_devices(chat_ids),
            earlier_sends=await self.find_sent(send_keys),
            blocks=await self.direct_blocks(chat_ids, sender_ids),
            timers=await self.disappearing(chat_ids),
        )

    async def devices_of(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        if not user_ids:
            return {}
        found = await self._db.fetch(DEVICES_OF, (rows.json_text(list(user_ids)),))
        return rows.group_devices(found)

    async def allocate_chat_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        return await self._allocate(ALLOCATE_CHAT_SEQS, counts)

    async def allocate_inbox_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        return await self._allocate(ALLOCATE_INBOX_SEQS, counts)

    async def allocate_seqs(
        self, chat_counts: Mapping[str, int], device_counts: Mapping[str, int]
    ) -> tuple[dict[str, int], dict[str, int]]:
        return (
            await self.allocate_chat_seqs(chat_counts),
            await self.allocate_inbox_seqs(device_counts),
        )

    async def _allocate(self, sql: str, counts: Mapping[str, int]) -> dict[str, int]:
        if not counts:
            return {}
        found = await self._db.fetch(sql, (rows.json_text(dict(counts)),))
        return {key: int(last) for key, last in found}

    async def insert_messages(self, messages: Sequence[Message]) -> None:
        await self._insert("messages", [rows.message_row(m, stored_time) for m in messages])

    async def insert_inbox(self, entries: Sequence[InboxEntry]) -> None:
        await self._insert("inbox", [rows.inbox_row(e, stored_time) for e in entries])

    async def insert_batch(
        self, messages: Sequence[Message], sent: Sequence[SentRecord], entries: Sequence[InboxEntry]
    ) -> None:
        await self.insert_messages(messages)
        await self._insert("sent_messages", [rows.sent_row(r, stored_time) for r in sent])
        await self.insert_inbox(entries)

    async def _insert(self, table: str, values: list[tuple[Any, ...]]) -> None:
        if values:
            await self._db.execute_many(INSERT[table], values)

    async def remove_acked(self, acks: Mapping[str, int]) -> AckOutcome:
        if not acks:
            return AckOutcome([], {})
        deleted = [
            (device_id, message_id)
            for device_id, message_id in await self._db.fetch(
                REMOVE_ACKED, (rows.json_text(dict(acks)),)
            )
            if message_id is not None
        ]
        if not deleted:
            return AckOutcome([], {})
        ids = rows.json_text(sorted({message_id for _, message_id in deleted}))
        found = {row[0]: row[1:] for row in await self._db.fetch(ACKED_MESSAGES, (ids,))}
        removed = [
            AckedMessage(device_id, message_id, *found[message_id])
            for device_id, message_id in deleted
            if message_id in found
        ]
        await self._db.execute(DELETE_DELIVERED, (ids,))
        senders = sorted({entry.sender_id for entry in removed if entry.sender_id is not None})
        return AckOutcome(removed, await self.devices_of(senders))

    async def senders_between(self, chat_id: str, after_seq: int, up_to_seq: int) -> set[str]:
        found = await self._db.fetch(SENDERS_BETWEEN, (chat_id, after_seq, up_to_seq))
        return {sender for (sender,) in found if sender is not None}

    async def pending(self, device_id: str, after_seq: int, limit: int) -> list[InboxEntry]:
        found = await self._db.fetch(PENDING, (device_id, after_seq, limit))
        return [rows.pending_entry(device_id, row, loaded_time, loaded_json) for row in found]

    async def purge_expired(self, now: datetime, sent_before: datetime) -> dict[str, int]:
        return {
            "queued": await self._db.execute(PURGE_QUEUED, (stored_time(now),)),
            "messages": await self._db.execute(PURGE_UNQUEUED_MESSAGES, ()),
            "send_records": await self._db.execute(
                PURGE_SEND_RECORDS, (stored_time(sent_before), stored_time(now))
            ),
        }
