"""What travels through a device's delivery queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pigeon.domain.changes import MessageChange
from pigeon.domain.chats import Message
from pigeon.domain.events import Receipt, StatusPosted

# A queued event that is not a message: a receipt, a change to a message, or a status.
QueuedEvent = Receipt | MessageChange | StatusPosted


@dataclass(slots=True, frozen=True)
class SentRecord:
    """What a (sender device, clientMessageId) became; answers retries of a send."""

    sender_device_id: str
    client_message_id: str
    message_id: str
    chat_id: str
    seq: int
    created_at: datetime
    sender_id: str | None = None  # None in records older than the sender column
    has_attachments: bool = False
    forward_hops: int = 0
    forwarded_from: str | None = None
    expires_at: datetime | None = None  # a disappearing message's expiry


SendKey = tuple[str, str, str]  # (sender device, chat, clientMessageId)


@dataclass(slots=True, frozen=True)
class BatchFacts:
    """What a batch of sends, reads and changes must know before it writes anything.

    Read together, in one round trip where the database allows, because every
    round trip of a batch is paid again at each commit of ordinary load.
    """

    members: dict[str, dict[str, list[str]]]  # chat -> member user -> device ids
    earlier_sends: dict[SendKey, SentRecord]
    blocks: set[tuple[str, str, str]]  # (1:1 chat, blocker, blocked sender)
    timers: dict[str, int]  # chat -> seconds its messages last, for disappearing chats


@dataclass(slots=True)
class InboxEntry:
    """One queued event for one device: a message, a receipt, a change or a status,
    at ``seq`` in its queue.

    ``user_id`` is the device's owner, known when the entry is made (a bus may
    route by user); entries read back from the queue leave it empty.
    """

    device_id: str
    seq: int
    expires_at: datetime
    message: Message | None = None
    event: QueuedEvent | None = None
    user_id: str = ""


@dataclass(slots=True, frozen=True)
class AckedMessage:
    """A message entry a device acknowledged, with what its delivered receipt needs."""

    device_id: str
    message_id: str
    chat_id: str
    seq: int
    sender_id: str | None


@dataclass(slots=True, frozen=True)
class AckOutcome:
    """What a batch of acks removed, with the senders' devices its receipts go to."""

    removed: list[AckedMessage]
    sender_devices: dict[str, list[str]]  # sender user -> device ids
