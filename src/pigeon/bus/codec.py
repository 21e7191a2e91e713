"""What crosses a remote bus, as bytes: queue entries, live events, and small control notes.

JSON through orjson, compact positional arrays. A message shared by several
entries of one payload (a group's fan-out to one node) travels once, and the
entries refer to it by id. Nothing here is durable: a payload lost or garbled
only delays delivery (the receiving connection reads its queue instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from pigeon.domain.changes import ChangeKind, MessageChange
from pigeon.domain.chats import Message, MessageKind
from pigeon.domain.delivery import InboxEntry, QueuedEvent
from pigeon.domain.events import (
    LiveEvent,
    PresenceChange,
    Receipt,
    ReceiptType,
    StatusPosted,
    Typing,
)


def _time(value: datetime) -> str:
    return value.isoformat()


def _message(m: Message) -> list[Any]:
    return [
        m.id,
        m.chat_id,
        m.seq,
        m.kind.value,
        m.sender_id,
        m.sender_device_id,
        m.body,
        m.attachments,
        m.reply_to,
        m.system,
        _time(m.created_at),
        m.forward_hops,
        m.quote,
        _time(m.expires_at) if m.expires_at else None,
        m.mentions,
    ]


def _message_from(fields: list[Any]) -> Message:
    (
        mid,
        chat_id,
        seq,
        kind,
        sender,
        device,
        body,
        attachments,
        reply_to,
        system,
        at,
        hops,
        quote,
        expires,
    ) = fields[:14]
    mentions = list(fields[14]) if len(fields) > 14 else []  # a node older than mentions
    return Message(
        mid,
        chat_id,
        seq,
        MessageKind(kind),
        sender,
        device,
        body,
        datetime.fromisoformat(at),
        attachments,
        reply_to,
        system,
        hops,
        quote,
        datetime.fromisoformat(expires) if expires else None,
        mentions,
    )


def _receipt(r: Receipt) -> list[Any]:
    return [r.chat_id, r.type.value, r.user_id, r.up_to_seq, _time(r.at)]


def _receipt_from(fields: list[Any]) -> Receipt:
    chat_id, kind, user_id, up_to, at = fields
    return Receipt(chat_id, ReceiptType(kind), user_id, up_to, datetime.fromisoformat(at))


def _change(c: MessageChange) -> list[Any]:
    return [
        "change",
        c.kind.value,
        c.chat_id,
        c.message_id,
        c.user_id,
        _time(c.at),
        c.emoji,
        c.text,
    ]


def _event(event: QueuedEvent) -> Any:
    """A receipt or a change as a list; a status as ``{"s": [...]}``."""
    if isinstance(event, StatusPosted):
        fields = [event.status_id, event.author_id, _time(event.created_at)]
        return {"s": [*fields, _time(event.expires_at)]}
    return _change(event) if isinstance(event, MessageChange) else _receipt(event)


def _event_from(fields: Any) -> QueuedEvent:
    if isinstance(fields, dict):
        status_id, author_id, created, expires = fields["s"]
        return StatusPosted(
            status_id, author_id, datetime.fromisoformat(created), datetime.fromisoformat(expires)
        )
    if fields[0] != "change":
        return _receipt_from(fields)
    _, kind, chat_id, message_id, user_id, at, emoji, text = fields
    return MessageChange(
        ChangeKind(kind), chat_id, message_id, user_id, datetime.fromisoformat(at), emoji, text
    )


def encode_entries(entries: Sequence[InboxEntry]) -> bytes:
    """Entries for any devices, each message once."""
    messages: dict[str, list[Any]] = {}
    rows = []
    for e in entries:
        if e.message is not None and e.message.id not in messages:
            messages[e.message.id] = _message(e.message)
        rows.append(
            [
                e.device_id,
                e.seq,
                _time(e.expires_at),
                e.message.id if e.message else None,
                _event(e.event) if e.event else None,
            ]
        )
    return orjson.dumps({"m": list(messages.values()), "e": rows})


def decode_entries(data: bytes) -> list[InboxEntry]:
    document = orjson.loads(data)
    messages = {fields[0]: _message_from(fields) for fields in document["m"]}
    return [
        InboxEntry(
            device_id=device,
            seq=seq,
            expires_at=datetime.fromisoformat(expires),
            message=messages[message_id] if message_id else None,
            event=_event_from(event) if event else None,
        )
        for device, seq, expires, message_id, event in document["e"]
    ]


def encode_live(event: LiveEvent) -> list[Any]:
    if isinstance(event, Typing):
        return ["typing", event.chat_id, event.user_id, event.composing]
    last_seen = _time(event.last_seen) if event.last_seen else None
    return ["presence", event.user_id, event.online, last_seen]


def decode_live(fields: list[Any]) -> LiveEvent:
    if fields[0] == "typing":
        return Typing(fields[1], fields[2], fields[3])
    last_seen = datetime.fromisoformat(fields[3]) if fields[3] else None
    return PresenceChange(fields[1], fields[2], last_seen)
