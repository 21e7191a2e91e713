"""The hot path's queries: each handles a whole batch in one statement where it can."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.chats import Message, MessageKind
from pigeon.domain.delivery import InboxEntry, SentRecord
from pigeon.storage.schema import (
    chat_members,
    chats,
    devices,
    inbox,
    inbox_counters,
    messages,
    sent_messages,
)


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


def _increment_by(column: sa.Column[Any], key: sa.Column[Any], counts: Mapping[str, int]) -> Any:
    """``column + CASE key WHEN a THEN n ... END``: one UPDATE bumps many counters."""
    return column + sa.case(counts, value=key, else_=0)


class SqlDeliveryRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def find_sent(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], SentRecord]:
        if not keys:
            return {}
        c = sent_messages.c
        query = sa.select(sent_messages).where(
            sa.tuple_(c.sender_device_id, c.chat_id, c.client_message_id).in_(list(keys))
        )
        found = {}
        for row in await self._conn.execute(query):
            record = SentRecord(**row._mapping)
            found[(record.sender_device_id, record.chat_id, record.client_message_id)] = record
        return found

    async def member_devices(self, chat_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        query = (
            sa.select(chat_members.c.chat_id, chat_members.c.user_id, devices.c.id)
            .select_from(
                chat_members.outerjoin(devices, devices.c.user_id == chat_members.c.user_id)
            )
            .where(chat_members.c.chat_id.in_(list(chat_ids)))
            .order_by(chat_members.c.chat_id, chat_members.c.user_id, devices.c.id)
        )
        result: dict[str, dict[str, list[str]]] = {}
        for chat_id, user_id, device_id in await self._conn.execute(query):
            user_devices = result.setdefault(chat_id, {}).setdefault(user_id, [])
            if device_id is not None:
                user_devices.append(device_id)
        return result

    async def devices_of(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        query = (
            sa.select(devices.c.user_id, devices.c.id)
            .where(devices.c.user_id.in_(list(user_ids)))
            .order_by(devices.c.id)
        )
        result: dict[str, list[str]] = {}
        for user_id, device_id in await self._conn.execute(query):
            result.setdefault(user_id, []).append(device_id)
        return result

    async def allocate_chat_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        return await self._allocate(chats, chats.c.id, chats.c.last_seq, counts)

    async def allocate_inbox_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        c = inbox_counters.c
        return await self._allocate(inbox_counters, c.device_id, c.last_seq, counts)

    async def _allocate(
        self,
        table: sa.Table,
        key: sa.Column[Any],
        counter: sa.Column[Any],
        counts: Mapping[str, int],
    ) -> dict[str, int]:
        if not counts:
            return {}
        ordered = dict(sorted(counts.items()))
        if self._conn.dialect.name == "postgresql":
            # Lock the rows in key order first: two nodes' batches touching the
            # same chats or devices then queue up instead of deadlocking.
            await self._conn.execute(
                sa.select(key).where(key.in_(list(ordered))).order_by(key).with_for_update()
            )
        result = await self._conn.execute(
            table.update()
            .where(key.in_(list(ordered)))
            .values({counter: _increment_by(counter, key, ordered)})
            .returning(key, counter)
        )
        return {row[0]: int(row[1]) for row in result}

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

    async def remove_acked_by_device(self, acks: Mapping[str, int]) -> list[tuple[str, str]]:
        if not acks:
            return []
        condition = sa.or_(
            *(sa.and_(inbox.c.device_id == d, inbox.c.seq <= up_to) for d, up_to in acks.items())
        )
        result = await self._conn.execute(
            inbox.delete().where(condition).returning(inbox.c.device_id, inbox.c.message_id)
        )
        return [(row[0], row[1]) for row in result if row[1] is not None]

    async def messages(self, message_ids: Sequence[str]) -> list[Message]:
        if not message_ids:
            return []
        query = sa.select(messages).where(messages.c.id.in_(list(message_ids)))
        return [_message(row._mapping) for row in await self._conn.execute(query)]

    async def delete_delivered(self, message_ids: Sequence[str]) -> int:
        if not message_ids:
            return 0
        still_queued = sa.exists().where(inbox.c.message_id == messages.c.id)
        result = await self._conn.execute(
            messages.delete().where(messages.c.id.in_(list(message_ids)), ~still_queued)
        )
        return int(result.rowcount)

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
