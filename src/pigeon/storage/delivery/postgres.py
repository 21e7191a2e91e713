"""The delivery queue on PostgreSQL: every statement, and ``PostgresDelivery`` running them.

Three habits run through the statements:

- One statement per step of a batch, one round trip each: the acks delete
  their entries, read what the delivered receipts need and delete the
  messages no entry holds any more in one statement (``REMOVE_ACKED``); a
  batch's messages, send records and queue entries go in one ``INSERT``.
- Lists travel as arrays (``unnest``, ``ANY``), rows to insert as one JSON
  document per table (asyncpg encodes array elements one by one in Python:
  5.5 ms of the server's CPU for 200 messages, where orjson writes the
  document in 0.35 ms and PostgreSQL reads it in C). Every statement has
  one fixed text, so asyncpg prepares it once.
- Rows are reached key by key (``LATERAL`` with ``LIMIT`` or ``OFFSET 0``,
  deletes by ``ctid``), which the planner cannot turn into a hash join:
  asyncpg keeps a generic plan per prepared statement, and one made while the
  tables were small or not yet analysed scanned them whole ever after.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.dialects import postgresql

from pigeon.domain.chats import Message
from pigeon.domain.delivery import (
    AckedMessage,
    AckOutcome,
    BatchFacts,
    InboxEntry,
    SendKey,
    SentRecord,
)
from pigeon.services.ports import StorageError
from pigeon.storage import schema
from pigeon.storage.delivery import rows
from pigeon.storage.delivery.executors import Executor

# Each key's first send record at or after it in primary-key order, kept if
# it is the key's own: a row comparison in the key's column order that only
# the primary key can serve. Plain equalities let a generic plan made on an
# empty table pick the (chat_id, seq) index and filter a chat's every record
# for each key (16 ms a batch once 20 chats held 45,000 records).
FIND_SENT = (
    "SELECT s.sender_device_id, s.chat_id, s.client_message_id, s.message_id, s.seq,"
    " s.created_at FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]))"
    " AS k(device_id, chat_id, client_id) CROSS JOIN LATERAL (SELECT * FROM sent_messages AS s"
    " WHERE (s.sender_device_id, s.chat_id, s.client_message_id)"
    " >= (k.device_id, k.chat_id, k.client_id)"
    " ORDER BY s.sender_device_id, s.chat_id, s.client_message_id LIMIT 1) AS s"
    " WHERE (s.sender_device_id, s.chat_id, s.client_message_id)"
    " = (k.device_id, k.chat_id, k.client_id)"
)
MEMBER_DEVICES = (
    "SELECT m.chat_id, m.user_id, d.id FROM chat_members AS m"
    " LEFT JOIN devices AS d ON d.user_id = m.user_id"
    " WHERE m.chat_id = ANY(CAST($1 AS TEXT[])) ORDER BY m.chat_id, m.user_id, d.id"
)
# Blocks of a batch's senders by members of its 1:1 chats: starts from the
# blocks index on blocked_id, which nearly always finds nothing.
DISAPPEARING = (
    "SELECT id, disappear_seconds FROM chats"
    " WHERE id = ANY(CAST($1 AS TEXT[])) AND disappear_seconds > 0"
)
DIRECT_BLOCKS = (
    "SELECT m.chat_id, b.blocker_id, b.blocked_id FROM blocks AS b"
    " JOIN chat_members AS m ON m.user_id = b.blocker_id"
    " JOIN chats AS c ON c.id = m.chat_id AND c.kind = 'direct'"
    " WHERE b.blocked_id = ANY(CAST($1 AS TEXT[])) AND m.chat_id = ANY(CAST($2 AS TEXT[]))"
)
DEVICES_OF = "SELECT user_id, id FROM devices WHERE user_id = ANY(CAST($1 AS TEXT[])) ORDER BY id"


def _renumbered(sql: str, numbers: dict[int, int]) -> str:
    """``sql`` with its placeholders renumbered, to run inside a larger statement."""
    return re.sub(r"\$(\d+)", lambda found: f"${numbers[int(found.group(1))]}", sql)


# MEMBER_DEVICES, FIND_SENT, DIRECT_BLOCKS and DISAPPEARING as one statement,
# each as an array of rows: $1 chats, $2-$4 send keys, $5 senders.
BATCH_FACTS = (
    f"SELECT ARRAY(SELECT ROW(f.*) FROM ({MEMBER_DEVICES}) AS f"
    " ORDER BY f.chat_id, f.user_id, f.id),"
    f" ARRAY(SELECT ROW(f.*) FROM ({_renumbered(FIND_SENT, {1: 2, 2: 3, 3: 4})}) AS f),"
    f" ARRAY(SELECT ROW(f.*) FROM ({_renumbered(DIRECT_BLOCKS, {1: 5, 2: 1})}) AS f),"
    f" ARRAY(SELECT ROW(f.*) FROM ({DISAPPEARING}) AS f)"
)


def _allocation(table: str, key: str, keys: int, counts: int, after: str = "") -> str:
    """Two WITH clauses, ``{table}_locked`` and ``{table}_seqs``: the latter adds each
    of ``$counts`` to its key's last seq and returns the new last seq.

    The rows are locked in key order first: two nodes' batches touching the same
    chats or devices then queue up instead of deadlocking. ``after`` names a
    clause whose rows must all be written before these rows are locked.
    """
    wait = f" AND (SELECT count(*) FROM {after}) >= 0" if after else ""
    return (
        f"{table}_locked AS MATERIALIZED (SELECT {key} FROM {table}"
        f" WHERE {key} = ANY(CAST(${keys} AS TEXT[])){wait} ORDER BY {key} FOR UPDATE),"
        f" {table}_seqs AS (UPDATE {table} AS t SET last_seq = t.last_seq + a.n FROM"
        f" unnest(CAST(${keys} AS TEXT[]), CAST(${counts} AS BIGINT[])) AS a(k, n)"
        f" WHERE t.{key} = a.k AND t.{key} IN (SELECT {key} FROM {table}_locked)"
        f" RETURNING t.{key}, t.last_seq)"
    )


ALLOCATE_CHAT_SEQS = f"WITH {_allocation('chats', 'id', 1, 2)} SELECT * FROM chats_seqs"
ALLOCATE_INBOX_SEQS = (
    f"WITH {_allocation('inbox_counters', 'device_id', 1, 2)} SELECT * FROM inbox_counters_seqs"
)
# Both: every chat of the batch is locked before any device, as a chat's seqs
# are before its devices' everywhere else (system messages).
ALLOCATE_SEQS = (
    f"WITH {_allocation('chats', 'id', 1, 2)},"
    f" {_allocation('inbox_counters', 'device_id', 3, 4, after='chats_seqs')}"
    " SELECT ARRAY(SELECT ROW(c.*) FROM chats_seqs AS c),"
    " ARRAY(SELECT ROW(d.*) FROM inbox_counters_seqs AS d)"
)
REMOVE_ACKED = (
    # Delete the entries, read what the receipts need, delete the messages no
    # other entry holds. Entries deleted by this same statement still show in
    # its snapshot, so a message is delivered when all its entries are among
    # those deleted.
    "WITH a AS (SELECT * FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS BIGINT[]))"
    " AS a(device_id, up_to)),"
    " gone AS (DELETE FROM inbox AS i WHERE i.ctid = ANY(ARRAY("
    "SELECT x.ctid FROM a CROSS JOIN LATERAL (SELECT ctid FROM inbox"
    " WHERE device_id = a.device_id AND seq <= a.up_to OFFSET 0) AS x))"
    " RETURNING i.device_id, i.seq, i.message_id),"
    " acked AS MATERIALIZED (SELECT g.device_id, g.message_id, m.chat_id, m.seq,"
    " m.sender_id, m.ctid FROM gone AS g CROSS JOIN LATERAL (SELECT ctid, chat_id, seq,"
    " sender_id FROM messages WHERE id = g.message_id LIMIT 1) AS m),"
    " delivered AS (DELETE FROM messages WHERE ctid = ANY(ARRAY(SELECT ctid FROM acked"
    " GROUP BY ctid, message_id HAVING count(*) = (SELECT count(*) FROM inbox AS i"
    " WHERE i.message_id = acked.message_id))))"
    # Each sender's devices once, on its first row (NULL on the others).
    " SELECT device_id, message_id, chat_id, seq, sender_id, CASE WHEN row_number()"
    " OVER (PARTITION BY sender_id) = 1 THEN ARRAY(SELECT d.id FROM devices AS d"
    " WHERE d.user_id = acked.sender_id ORDER BY d.id) END FROM acked"
)
SENDERS_BETWEEN = (
    "SELECT DISTINCT COALESCE(s.sender_id, d.user_id) FROM sent_messages AS s"
    " LEFT JOIN devices AS d ON s.sender_id IS NULL AND d.id = s.sender_device_id"
    " WHERE s.chat_id = $1 AND s.seq > $2 AND s.seq <= $3"
)
PENDING = (
    f"SELECT i.seq, i.event, i.expires_at, {rows.MESSAGE_COLUMNS} FROM (SELECT seq, event,"
    " expires_at, message_id FROM inbox WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3)"
    " AS i LEFT JOIN LATERAL (SELECT * FROM messages WHERE id = i.message_id LIMIT 1) AS m"
    " ON true ORDER BY i.seq"
)
PURGE_QUEUED = "DELETE FROM inbox WHERE expires_at <= $1"
PURGE_UNQUEUED_MESSAGES = (
    "DELETE FROM messages"
    " WHERE NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.message_id = messages.id)"
)
# Old records, and those of disappearing messages past their time (by index each).
PURGE_SEND_RECORDS = (
    "DELETE FROM sent_messages WHERE created_at < $1 OR (expires_at IS NOT NULL"
    " AND expires_at <= $2)"
)


def _json_insert(table: str, placeholder: int) -> str:
    """One INSERT for any number of rows, which travel as one JSON array of arrays.

    Each field is cast from its JSON text to the column's type, so values land
    exactly as SQLAlchemy's types would store them.
    """
    types = {
        c.name: c.type.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
        for c in schema.metadata.tables[table].columns
    }
    columns = rows.COLUMNS[table]
    fields = ", ".join(f"CAST(r ->> {i} AS {types[c]})" for i, c in enumerate(columns))
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {fields}"
        f" FROM jsonb_array_elements(CAST(${placeholder} AS JSONB)) AS r"
    )


@functools.cache
def insert_statement(tables: tuple[str, ...]) -> str:
    """The inserts into ``tables`` as one statement: all but the last as WITH clauses."""
    parts = [_json_insert(table, n) for n, table in enumerate(tables, start=1)]
    clauses = ", ".join(f"t{n} AS ({sql})" for n, sql in enumerate(parts[:-1]))
    return f"WITH {clauses} {parts[-1]}" if clauses else parts[-1]


def stored_time(value: datetime) -> datetime:
    return value  # asyncpg takes timezone-aware datetimes; orjson writes them as RFC 3339


def loaded(value: Any) -> Any:
    return value  # asyncpg returns aware datetimes; SQLAlchemy's codec decodes JSON


class PostgresDelivery:
    """``DeliveryRepository`` on PostgreSQL, through whichever executor it is given."""

    __slots__ = ("_db",)

    def __init__(self, executor: Executor) -> None:
        self._db = executor

    async def find_sent(self, keys: Sequence[SendKey]) -> dict[SendKey, SentRecord]:
        if not keys:
            return {}
        return _sent_records(await self._db.fetch(FIND_SENT, _key_columns(keys)))

    async def batch_facts(
        self, chat_ids: Sequence[str], send_keys: Sequence[SendKey], sender_ids: Sequence[str]
    ) -> BatchFacts:
        if not chat_ids:
            return BatchFacts({}, {}, set(), {})
        args = (list(chat_ids), *_key_columns(send_keys), list(sender_ids))
        ((members, sent, blocks, timers),) = await self._db.fetch(BATCH_FACTS, args)
        return BatchFacts(
            members=rows.group_member_devices(members),
            earlier_sends=_sent_records(sent),
            blocks={(c, blocker, blocked) for c, blocker, blocked in blocks},
            timers={chat_id: seconds for chat_id, seconds in timers},
        )

    async def member_devices(self, chat_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        if not chat_ids:
            return {}
        return rows.group_member_devices(await self._db.fetch(MEMBER_DEVICES, (list(chat_ids),)))

    async def direct_blocks(
        self, chat_ids: Sequence[str], sender_ids: Sequence[str]
    ) -> set[tuple[str, str, str]]:
        if not chat_ids or not sender_ids:
            return set()
        found = await self._db.fetch(DIRECT_BLOCKS, (list(sender_ids), list(chat_ids)))
        return {(c, blocker, blocked) for c, blocker, blocked in found}

    async def disappearing(self, chat_ids: Sequence[str]) -> dict[str, int]:
        if not chat_ids:
            return {}
        found = await self._db.fetch(DISAPPEARING, (list(chat_ids),))
        return {chat_id: seconds for chat_id, seconds in found}

    async def devices_of(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        if not user_ids:
            return {}
        return rows.group_devices(await self._db.fetch(DEVICES_OF, (list(user_ids),)))

    async def allocate_chat_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        return await self._allocate(ALLOCATE_CHAT_SEQS, counts)

    async def allocate_inbox_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        return await self._allocate(ALLOCATE_INBOX_SEQS, counts)

    async def allocate_seqs(
        self, chat_counts: Mapping[str, int], device_counts: Mapping[str, int]
    ) -> tuple[dict[str, int], dict[str, int]]:
        if not chat_counts or not device_counts:
            return (
                await self.allocate_chat_seqs(chat_counts),
                await self.allocate_inbox_seqs(device_counts),
            )
        chats, devices = dict(sorted(chat_counts.items())), dict(sorted(device_counts.items()))
        args = (list(chats), list(chats.values()), list(devices), list(devices.values()))
        ((chat_last, device_last),) = await self._db.fetch(ALLOCATE_SEQS, args)
        return (
            {key: int(last) for key, last in chat_last},
            {key: int(last) for key, last in device_last},
        )

    async def _allocate(self, sql: str, counts: Mapping[str, int]) -> dict[str, int]:
        if not counts:
            return {}
        ordered = dict(sorted(counts.items()))
        found = await self._db.fetch(sql, (list(ordered), list(ordered.values())))
        return {key: int(last) for key, last in found}

    async def insert_messages(self, messages: Sequence[Message]) -> None:
        await self._insert({"messages": [rows.message_row(m, stored_time) for m in messages]})

    async def insert_inbox(self, entries: Sequence[InboxEntry]) -> None:
        await self._insert({"inbox": [rows.inbox_row(e, stored_time) for e in entries]})

    async def insert_batch(
        self, messages: Sequence[Message], sent: Sequence[SentRecord], entries: Sequence[InboxEntry]
    ) -> None:
        await self._insert(
            {
                "messages": [rows.message_row(m, stored_time) for m in messages],
                "sent_messages": [rows.sent_row(r, stored_time) for r in sent],
                "inbox": [rows.inbox_row(e, stored_time) for e in entries],
            }
        )

    async def _insert(self, values: dict[str, list[tuple[Any, ...]]]) -> None:
        tables = tuple(table for table, table_rows in values.items() if table_rows)
        if not tables:
            return
        try:
            documents = [orjson.dumps(values[table]).decode() for table in tables]
        except orjson.JSONEncodeError as exc:  # text UTF-8 cannot hold: this batch's fault
            raise StorageError(str(exc)) from exc
        await self._db.execute(insert_statement(tables), documents)

    async def remove_acked(self, acks: Mapping[str, int]) -> AckOutcome:
        if not acks:
            return AckOutcome([], {})
        removed: list[AckedMessage] = []
        sender_devices: dict[str, list[str]] = {}
        found = await self._db.fetch(REMOVE_ACKED, (list(acks), list(acks.values())))
        for device_id, message_id, chat_id, seq, sender_id, devices in found:
            removed.append(AckedMessage(device_id, message_id, chat_id, seq, sender_id))
            if devices is not None and sender_id is not None:
                sender_devices[sender_id] = list(devices)
        return AckOutcome(removed, sender_devices)

    async def senders_between(self, chat_id: str, after_seq: int, up_to_seq: int) -> set[str]:
        found = await self._db.fetch(SENDERS_BETWEEN, (chat_id, after_seq, up_to_seq))
        return {sender for (sender,) in found if sender is not None}

    async def pending(self, device_id: str, after_seq: int, limit: int) -> list[InboxEntry]:
        found = await self._db.fetch(PENDING, (device_id, after_seq, limit))
        return [rows.pending_entry(device_id, row, loaded, loaded) for row in found]

    async def purge_expired(self, now: datetime, sent_before: datetime) -> dict[str, int]:
        return {
            "queued": await self._db.execute(PURGE_QUEUED, (now,)),
            "messages": await self._db.execute(PURGE_UNQUEUED_MESSAGES, ()),
            "send_records": await self._db.execute(PURGE_SEND_RECORDS, (sent_before, now)),
        }


def _key_columns(keys: Sequence[SendKey]) -> tuple[list[str], list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


def _sent_records(found: Sequence[Sequence[Any]]) -> dict[SendKey, SentRecord]:
    return {
        (device_id, chat_id, client_id): SentRecord(
            device_id, client_id, message_id, chat_id, seq, created_at
        )
        for device_id, chat_id, client_id, message_id, seq, created_at in found
    }
