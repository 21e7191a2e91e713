"""The hot path's queries: each handles a whole batch in one statement where it can."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.chats import Message, MessageKind
from pigeon.domain.delivery import AckedMessage, AckOutcome, InboxEntry, SentRecord
from pigeon.storage.schema import UtcDateTime, inbox, messages, sent_messages


def _message(m: Any) -> Message:
    return Message(
        id=m["id"],
        chat_id=m["chat_id"],
        seq=m["seq"],
        kind=MessageKind(m["kind"]),
        sender_id=m["sender_id"],
        sender_device_id=m["sender_device_id"],
        body=m["body"],
        created_at=m["created_at"],
        attachments=list(m["attachments"] or []),
        reply_to=m["reply_to"],
        system=m["system"],
    )


Statement = sa.TextClause | sa.TextualSelect


def json_text(value: Any) -> str:
    """``value`` as JSON text, for SQLite's ``json_each`` and JSON columns.

    orjson is ~10x faster than the standard library on the hot path's lists.
    Text UTF-8 cannot hold (a lone surrogate) it refuses; the standard
    library escapes it, as SQLAlchemy's JSON type would.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


class _Statements:
    """The hot path's variable-length statements, one fixed text per dialect.

    On PostgreSQL they reach their rows key by key (``LATERAL`` with ``LIMIT``
    or ``OFFSET 0``, which the planner cannot turn into a hash join): asyncpg's
    prepared statements keep a generic plan, and one made while the tables were
    small, or before they were first analysed, scans them whole for ever after
    (0.4 ms per statement after 10 seconds of load on a new database).

    SQLAlchemy caches a statement's compiled form only while its shape stays the
    same; an ``IN`` list or a ``CASE`` with one branch per item changes shape
    with every batch and was compiled anew each time (a sixth of the server's
    CPU at 1,000 messages/s). Here every list travels as one parameter: a JSON
    text read by ``json_each`` on SQLite, an array read by ``unnest``/``ANY``
    on PostgreSQL (where a fixed text also keeps asyncpg's prepared statements).
    """

    def __init__(self, dialect: str) -> None:
        pg = dialect == "postgresql"

        def one_of(name: str) -> str:
            if pg:
                return f"= ANY(CAST(:{name} AS TEXT[]))"
            return f"IN (SELECT value FROM json_each(:{name}))"

        self.postgresql = pg
        self.find_sent = sa.text(
            "SELECT s.sender_device_id, s.chat_id, s.client_message_id, s.message_id, s.seq,"
            " s.created_at FROM "
            + (
                "unnest(CAST(:devices AS TEXT[]), CAST(:chats AS TEXT[]), CAST(:ids AS TEXT[]))"
                " AS k(device_id, chat_id, client_id) CROSS JOIN LATERAL (SELECT * FROM"
                " sent_messages AS s WHERE s.sender_device_id = k.device_id"
                " AND s.chat_id = k.chat_id AND s.client_message_id = k.client_id LIMIT 1) AS s"
                if pg
                # CROSS JOIN: SQLite then walks the keys and probes the primary key.
                else "json_each(:keys) AS k CROSS JOIN sent_messages AS s"
                " ON s.sender_device_id = k.value ->> 0 AND s.chat_id = k.value ->> 1"
                " AND s.client_message_id = k.value ->> 2"
            )
        ).columns(created_at=UtcDateTime())
        self.member_devices = sa.text(
            "SELECT m.chat_id, m.user_id, d.id FROM chat_members AS m"
            " LEFT JOIN devices AS d ON d.user_id = m.user_id"
            f" WHERE m.chat_id {one_of('chats')} ORDER BY m.chat_id, m.user_id, d.id"
        )
        self.devices_of = sa.text(
            f"SELECT user_id, id FROM devices WHERE user_id {one_of('users')} ORDER BY id"
        )
        self.allocate = {
            table: self._allocate(table, key, pg)
            for table, key in (("chats", "id"), ("inbox_counters", "device_id"))
        }
        self.remove_acked = sa.text(
            # One statement, one round trip: delete the entries, read what the
            # receipts need, delete the messages no other entry holds. Entries
            # deleted by this same statement still show in its snapshot, so a
            # message is delivered when all its entries are among those deleted.
            # Rows are found by key and deleted by their ctid, so no plan can
            # scan a table (see the class docstring).
            "WITH a AS (SELECT * FROM unnest(CAST(:devices AS TEXT[]), CAST(:up_to AS BIGINT[]))"
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
            if pg
            # The JSON is read once into a table, not once per row the DELETE visits.
            else "WITH a AS MATERIALIZED (SELECT key AS device_id, value AS up_to"
            " FROM json_each(:acks)) DELETE FROM inbox"
            " WHERE device_id IN (SELECT device_id FROM a)"
            " AND seq <= (SELECT up_to FROM a WHERE a.device_id = inbox.device_id)"
            " RETURNING device_id, message_id"
        )
        self.acked_messages = sa.text(
            f"SELECT id, chat_id, seq, sender_id FROM messages WHERE id {one_of('ids')}"
        )
        self.delete_delivered = sa.text(
            f"DELETE FROM messages WHERE id {one_of('ids')}"
            " AND NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.message_id = messages.id)"
        )

    @staticmethod
    def _allocate(table: str, key: str, pg: bool) -> sa.TextClause:
        if pg:
            # Lock the rows in key order first: two nodes' batches touching the
            # same chats or devices then queue up instead of deadlocking.
            return sa.text(
                f"WITH locked AS MATERIALIZED (SELECT {key} FROM {table}"
                f" WHERE {key} = ANY(CAST(:keys AS TEXT[])) ORDER BY {key} FOR UPDATE)"
                f" UPDATE {table} AS t SET last_seq = t.last_seq + a.n FROM"
                " unnest(CAST(:keys AS TEXT[]), CAST(:counts AS BIGINT[])) AS a(k, n)"
                f" WHERE t.{key} = a.k AND t.{key} IN (SELECT {key} FROM locked)"
                f" RETURNING t.{key}, t.last_seq"
            )
        return sa.text(
            "WITH a AS MATERIALIZED (SELECT key AS k, value AS n FROM json_each(:counts))"
            f" UPDATE {table} SET last_seq = last_seq + (SELECT n FROM a WHERE a.k = {table}.{key})"
            f" WHERE {key} IN (SELECT k FROM a) RETURNING {key}, last_seq"
        )

    def values(self, name: str, items: Sequence[Any]) -> dict[str, Any]:
        """One list parameter: an array for PostgreSQL, JSON text for SQLite."""
        return {name: list(items) if self.postgresql else json_text(list(items))}


_STATEMENTS = {name: _Statements(name) for name in ("sqlite", "postgresql")}


class SqlDeliveryRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._sql = _STATEMENTS[conn.dialect.name]

    async def _rows(self, statement: Statement, params: Mapping[str, Any]) -> Sequence[Any]:
        """Run one of the statements above; its rows as tuples."""
        return (await self._conn.execute(statement, params)).all()

    async def _rowcount(self, statement: Statement, params: Mapping[str, Any]) -> int:
        return int((await self._conn.execute(statement, params)).rowcount)

    async def find_sent(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], SentRecord]:
        if not keys:
            return {}
        params: dict[str, Any]
        if self._sql.postgresql:
            params = {
                "devices": [k[0] for k in keys],
                "chats": [k[1] for k in keys],
                "ids": [k[2] for k in keys],
            }
        else:
            params = {"keys": json_text([list(k) for k in keys])}
        found = {}
        for device_id, chat_id, client_id, message_id, seq, created_at in await self._rows(
            self._sql.find_sent, params
        ):
            found[(device_id, chat_id, client_id)] = SentRecord(
                device_id, client_id, message_id, chat_id, seq, self._time(created_at)
            )
        return found

    def _time(self, value: Any) -> datetime:
        assert isinstance(value, datetime)  # typed by the statement's columns
        return value

    async def member_devices(self, chat_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        if not chat_ids:  # a batch of acks only
            return {}
        rows = await self._rows(self._sql.member_devices, self._sql.values("chats", chat_ids))
        result: dict[str, dict[str, list[str]]] = {}
        for chat_id, user_id, device_id in rows:
            user_devices = result.setdefault(chat_id, {}).setdefault(user_id, [])
            if device_id is not None:
                user_devices.append(device_id)
        return result

    async def devices_of(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        rows = await self._rows(self._sql.devices_of, self._sql.values("users", user_ids))
        result: dict[str, list[str]] = {}
        for user_id, device_id in rows:
            result.setdefault(user_id, []).append(device_id)
        return result

    async def allocate_chat_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        return await self._allocate("chats", counts)

    async def allocate_inbox_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        return await self._allocate("inbox_counters", counts)

    async def _allocate(self, table: str, counts: Mapping[str, int]) -> dict[str, int]:
        if not counts:
            return {}
        ordered = dict(sorted(counts.items()))
        if self._sql.postgresql:
            params: dict[str, Any] = {"keys": list(ordered), "counts": list(ordered.values())}
        else:
            params = {"counts": json_text(ordered)}
        return {key: int(last) for key, last in await self._rows(self._sql.allocate[table], params)}

    async def insert_messages(self, batch: Sequence[Message]) -> None:
        if not batch:
            return
        await self._conn.execute(
            messages.insert(),
            [
                {
                    "id": m.id,
                    "chat_id": m.chat_id,
                    "seq": m.seq,
                    "kind": m.kind.value,
                    "sender_id": m.sender_id,
                    "sender_device_id": m.sender_device_id,
                    "body": m.body,
                    "attachments": m.attachments,
                    "reply_to": m.reply_to,
                    "system": m.system,
                    "created_at": m.created_at,
                }
                for m in batch
            ],
        )

    async def insert_sent(self, records: Sequence[SentRecord]) -> None:
        if records:
            await self._conn.execute(
                sent_messages.insert(),
                [
                    {
                        "sender_device_id": r.sender_device_id,
                        "client_message_id": r.client_message_id,
                        "message_id": r.message_id,
                        "chat_id": r.chat_id,
                        "seq": r.seq,
                        "created_at": r.created_at,
                    }
                    for r in records
                ],
            )

    async def insert_inbox(self, entries: Sequence[InboxEntry]) -> None:
        if entries:
            await self._conn.execute(
                inbox.insert(),
                [
                    {
                        "device_id": e.device_id,
                        "seq": e.seq,
                        "message_id": e.message.id if e.message else None,
                        "event": e.event,
                        "expires_at": e.expires_at,
                    }
                    for e in entries
                ],
            )

    async def insert_batch(
        self, messages: Sequence[Message], sent: Sequence[SentRecord], entries: Sequence[InboxEntry]
    ) -> None:
        await self.insert_messages(messages)
        await self.insert_sent(sent)
        await self.insert_inbox(entries)

    async def remove_acked(self, acks: Mapping[str, int]) -> AckOutcome:
        if not acks:
            return AckOutcome([], {})
        if self._sql.postgresql:
            params = {"devices": list(acks), "up_to": list(acks.values())}
            removed: list[AckedMessage] = []
            sender_devices: dict[str, list[str]] = {}
            for *acked, devices in await self._rows(self._sql.remove_acked, params):
                entry = AckedMessage(*acked)
                removed.append(entry)
                if devices is not None and entry.sender_id is not None:
                    sender_devices[entry.sender_id] = devices
            return AckOutcome(removed, sender_devices)
        removed = await self._remove_acked_entries(acks)
        ids = sorted({entry.message_id for entry in removed})
        if ids:
            await self._rowcount(self._sql.delete_delivered, self._sql.values("ids", ids))
        senders = sorted({entry.sender_id for entry in removed if entry.sender_id is not None})
        return AckOutcome(removed, await self.devices_of(senders) if senders else {})

    async def _remove_acked_entries(self, acks: Mapping[str, int]) -> list[AckedMessage]:
        removed = [
            (device_id, message_id)
            for device_id, message_id in await self._rows(
                self._sql.remove_acked, {"acks": json_text(dict(acks))}
            )
            if message_id is not None
        ]
        if not removed:
            return []
        ids = sorted({message_id for _, message_id in removed})
        found = {
            row[0]: row[1:]
            for row in await self._rows(self._sql.acked_messages, self._sql.values("ids", ids))
        }
        return [
            AckedMessage(device_id, message_id, *found[message_id])
            for device_id, message_id in removed
            if message_id in found
        ]

    async def pending(self, device_id: str, after_seq: int, limit: int) -> list[InboxEntry]:
        query = (
            # Labelled: the message's own "seq" (per chat) must not shadow the inbox's.
            sa.select(inbox.c.seq.label("inbox_seq"), inbox.c.event, inbox.c.expires_at, messages)
            .select_from(inbox.outerjoin(messages, messages.c.id == inbox.c.message_id))
            .where(inbox.c.device_id == device_id, inbox.c.seq > after_seq)
            .order_by(inbox.c.seq)
            .limit(limit)
        )
        entries = []
        for row in await self._conn.execute(query):
            m = row._mapping
            entries.append(
                InboxEntry(
                    device_id=device_id,
                    seq=m["inbox_seq"],
                    expires_at=m["expires_at"],
                    message=_message(m) if m["id"] is not None else None,
                    event=m["event"],
                )
            )
        return entries

    async def purge_expired(self, now: datetime, sent_before: datetime) -> dict[str, int]:
        queued = await self._conn.execute(inbox.delete().where(inbox.c.expires_at <= now))
        unreferenced = await self._conn.execute(
            messages.delete().where(~sa.exists().where(inbox.c.message_id == messages.c.id))
        )
        sent = await self._conn.execute(
            sent_messages.delete().where(sent_messages.c.created_at < sent_before)
        )
        return {
            "queued": int(queued.rowcount),
            "messages": int(unreferenced.rowcount),
            "send_records": int(sent.rowcount),
        }
