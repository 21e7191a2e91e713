"""The events devices receive, as JSON-ready dicts (see docs/protocol.md)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from pigeon.domain.chats import Message
from pigeon.domain.delivery import InboxEntry


@functools.lru_cache(maxsize=256)  # a batch's messages and receipts share one time
def timestamp(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: what clients sort and show."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def message_data(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {
        "chatId": message.chat_id,
        "messageId": message.id,
        "seq": message.seq,
        "kind": message.kind.value,
        "senderId": message.sender_id,
        "senderDeviceId": message.sender_device_id,
        "message": message.body,
        "attachments": message.attachments,
        "createdAt": timestamp(message.created_at),
    }
    if message.reply_to is not None:
        data["replyTo"] = message.reply_to
    if message.system is not None:
        data["system"] = message.system
    return data


def queued_frame(
    entry: InboxEntry, message_cache: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The frame for one queue entry: a ``message`` event or the stored event (``receipt``)."""
    if entry.message is not None:
        base = None
        if message_cache is not None:
            base = message_cache.get(entry.message.id)
        if base is None:
            base = message_data(entry.message)
            if message_cache is not None:
                message_cache[entry.message.id] = base
        return {"event": "message", "data": {**base, "inboxSeq": entry.seq}}
    assert entry.event is not None
    return {"event": entry.event["event"], "data": {**entry.event["data"], "inboxSeq": entry.seq}}


def receipt_event(
    chat_id: str, kind: str, user_id: str, up_to_seq: int, at: datetime
) -> dict[str, Any]:
    return {
        "event": "receipt",
        "data": {
            "chatId": chat_id,
            "type": kind,
            "userId": user_id,
            "upToSeq": up_to_seq,
            "at": timestamp(at),
        },
    }
