"""Domain objects as the delivery tables' rows, and back: one row shape for both dialects.

Values are written as SQLAlchemy's column types would store them (JSON as
text; on SQLite, timestamps as naive UTC text), so rows written here and rows
written through SQLAlchemy read back alike. What differs per dialect, how a
timestamp is stored and how stored values come back, is passed in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from pigeon.domain.changes import ChangeKind, MessageChange
from pigeon.domain.chats import Message, MessageKind
from pigeon.domain.delivery import InboxEntry, QueuedEvent, SentRecord
from pigeon.domain.events import Receipt, ReceiptType, StatusPosted
from pigeon.storage.schema import inbox, messages, sent_messages

# Each table's columns in schema order: the order of every row built below.
COLUMNS: dict[str, tuple[str, ...]] = {
    table.name: tuple(table.columns.keys()) for table in (messages, sent_messages, inbox)
}
MESSAGE_COLUMNS = ", ".join(f"m.{name}" for name in COLUMNS["messages"])

StoreTime = Callable[[datetime], Any]
LoadTime = Callable[[Any], datetime]
LoadJson = Callable[[Any], Any]


def json_text(value: Any) -> str:
    """``value`` as JSON text.

    orjson is ~10x faster than the standard library on the hot path's lists.
    Text UTF-8 cannot hold (a lone surrogate) it refuses; the standard
    library escapes it, as SQLAlchemy's JSON type would.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def stored_json(value: Any) -> str:
    # SQLAlchemy's JSON type stores None as JSON null, not SQL NULL; so do we.
    # Most messages have no attachments and no system payload: skip the encoder.
    if value is None:
        return "null"
    if value == []:
        return "[]"
    return json_text(value)


def message_row(m: Message, time: StoreTime) -> tuple[Any, ...]:
    return (
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
        time(m.created_at),
        m.forward_hops,
        stored_json(m.quote),
        time(m.expires_at) if m.expires_at else None,
        json_text(m.mentions) if m.mentions else None,  # SQL NULL: most mention nobody
    )


def sent_row(r: SentRecord, time: StoreTime) -> tuple[Any, ...]:
    return (
        r.sender_device_id,
        r.chat_id,
        r.client_message_id,
        r.message_id,
        r.seq,
        time(r.created_at),
        r.sender_id,
        r.has_attachments,
        r.forward_hops,
        None,  # deleted_at: a new message is not deleted
        r.forwarded_from,
        time(r.expires_at) if r.expires_at else None,
    )


def inbox_row(e: InboxEntry, time: StoreTime) -> tuple[Any, ...]:
    return (
        e.device_id,
        e.seq,
        e.message.id if e.message else None,
        stored_json(event_document(e.event) if e.event else None),
        time(e.expires_at),
    )


def event_document(event: QueuedEvent) -> dict[str, Any]:
    """A queued event that is not a message, as its queue entry stores it."""
    if isinstance(event, MessageChange):
        return change_document(event)
    if isinstance(event, StatusPosted):
        return {
            "kind": "status",
            "status_id": event.status_id,
            "author_id": event.author_id,
            "created_at": event.created_at.isoformat(),
            "expires_at": event.expires_at.isoformat(),
        }
    return receipt_document(event)


def event_from_document(document: dict[str, Any]) -> QueuedEvent:
    if document.get("kind") == "status":
        return StatusPosted(
            status_id=document["status_id"],
            author_id=document["author_id"],
            created_at=datetime.fromisoformat(document["created_at"]),
            expires_at=datetime.fromisoformat(document["expires_at"]),
        )
    if document.get("kind") == "change":
        return change_from_document(document)
    return receipt_from_document(document)


def change_document(change: MessageChange) -> dict[str, Any]:
    """A change to a message as its queue entry stores it (an edit's text until delivered)."""
    return {
        "kind": "change",
        "change": change.kind.value,
        "chat_id": change.chat_id,
        "message_id": change.message_id,
        "user_id": change.user_id,
        "at": change.at.isoformat(),
        "emoji": change.emoji,
        "text": change.text,
    }


def change_from_document(document: dict[str, Any]) -> MessageChange:
    return MessageChange(
        kind=ChangeKind(document["change"]),
        chat_id=document["chat_id"],
        message_id=document["message_id"],
        user_id=document["user_id"],
        at=datetime.fromisoformat(document["at"]),
        emoji=document["emoji"],
        text=document["text"],
    )


def receipt_document(receipt: Receipt) -> dict[str, Any]:
    """A receipt as its queue entry stores it."""
    return {
        "kind": "receipt",
        "chat_id": receipt.chat_id,
        "type": receipt.type.value,
        "user_id": receipt.user_id,
        "up_to_seq": receipt.up_to_seq,
        "at": receipt.at.isoformat(),
    }


def receipt_from_document(document: dict[str, Any]) -> Receipt:
    """A stored receipt; also those stored before 0.2 as the wire frame they became."""
    if "event" in document:  # {"event": "receipt", "data": {"chatId", "userId", ...}}
        data = document["data"]
        return Receipt(
            chat_id=data["chatId"],
            type=ReceiptType(data["type"]),
            user_id=data["userId"],
            up_to_seq=data["upToSeq"],
            at=datetime.fromisoformat(data["at"]),
        )
    return Receipt(
        chat_id=document["chat_id"],
        type=ReceiptType(document["type"]),
        user_id=document["user_id"],
        up_to_seq=document["up_to_seq"],
        at=datetime.fromisoformat(document["at"]),
    )


def message_from_row(row: Sequence[Any], time: LoadTime, load_json: LoadJson) -> Message:
    """A message from its columns in ``COLUMNS["messages"]`` order."""
    (
        message_id,
        chat_id,
        seq,
        kind,
        sender_id,
        sender_device_id,
        body,
        attachments,
        reply_to,
        system,
        created_at,
        forward_hops,
        quote,
        expires_at,
        mentions,
    ) = row
    return Message(
        id=message_id,
        chat_id=chat_id,
        seq=seq,
        kind=MessageKind(kind),
        sender_id=sender_id,
        sender_device_id=sender_device_id,
        body=body,
        created_at=time(created_at),
        attachments=list(load_json(attachments) or []),
        reply_to=reply_to,
        system=load_json(system),
        forward_hops=forward_hops or 0,
        quote=load_json(quote),
        expires_at=time(expires_at) if expires_at is not None else None,
        mentions=list(load_json(mentions) or []),
    )


def pending_entry(
    device_id: str, row: Sequence[Any], time: LoadTime, load_json: LoadJson
) -> InboxEntry:
    """A queue entry from ``(seq, event, expires_at, *message columns)``."""
    seq, event, expires_at, *message = row
    document = load_json(event)
    return InboxEntry(
        device_id=device_id,
        seq=seq,
        expires_at=time(expires_at),
        message=message_from_row(message, time, load_json) if message[0] is not None else None,
        event=event_from_document(document) if document else None,
    )


def group_member_devices(rows: Sequence[Sequence[Any]]) -> dict[str, dict[str, list[str]]]:
    """chat -> member -> device ids, from ``(chat, user, device or NULL)`` rows."""
    result: dict[str, dict[str, list[str]]] = {}
    for chat_id, user_id, device_id in rows:
        user_devices = result.setdefault(chat_id, {}).setdefault(user_id, [])
        if device_id is not None:
            user_devices.append(device_id)
    return result


def group_devices(rows: Sequence[Sequence[Any]]) -> dict[str, list[str]]:
    """user -> device ids, from ``(user, device)`` rows."""
    result: dict[str, list[str]] = {}
    for user_id, device_id in rows:
        result.setdefault(user_id, []).append(device_id)
    return result
