"""Writing messages and queue entries inside a caller's transaction.

Both the group committer (sends, acks, reads) and the chat service (system
messages about membership) append through here, so seq allocation and
queueing work the same way everywhere. Publishing what was appended is the
caller's job, after its commit (``Bus.publish``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pigeon.domain.chats import Message
from pigeon.domain.delivery import InboxEntry, QueuedEvent
from pigeon.services.ports import UnitOfWork


@dataclass(slots=True)
class Queued:
    """One item to queue for one device (of ``user_id``): a message, a receipt or a change."""

    device_id: str
    user_id: str
    message: Message | None = None
    event: QueuedEvent | None = None
    # Sooner than the queue's usual expiry: a disappearing message, or a change to one.
    expires_at: datetime | None = None


async def assign_seqs(uow: UnitOfWork, messages: Sequence[Message]) -> None:
    """Give each message the next seq of its chat, in list order."""
    counts = _counts(message.chat_id for message in messages)
    _number(messages, counts, await uow.delivery.allocate_chat_seqs(counts))


async def enqueue(
    uow: UnitOfWork, items: Sequence[Queued], expires_at: datetime
) -> list[InboxEntry]:
    """Append ``items`` to their devices' queues, in list order per device."""
    entries = await assign_inbox_seqs(uow, items, expires_at)
    await uow.delivery.insert_inbox(entries)
    return entries


async def assign_inbox_seqs(
    uow: UnitOfWork, items: Sequence[Queued], expires_at: datetime
) -> list[InboxEntry]:
    """The queue entries for ``items``, numbered in list order per device, not yet inserted."""
    counts = _counts(item.device_id for item in items)
    return _entries(items, counts, await uow.delivery.allocate_inbox_seqs(counts), expires_at)


async def assign_all_seqs(
    uow: UnitOfWork, messages: Sequence[Message], items: Sequence[Queued], expires_at: datetime
) -> list[InboxEntry]:
    """``assign_seqs`` and ``assign_inbox_seqs`` in one allocation (one round trip)."""
    chat_counts = _counts(message.chat_id for message in messages)
    device_counts = _counts(item.device_id for item in items)
    chat_last, device_last = await uow.delivery.allocate_seqs(chat_counts, device_counts)
    _number(messages, chat_counts, chat_last)
    return _entries(items, device_counts, device_last, expires_at)


def _counts(keys: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for key in keys:
        counts[key] += 1
    return counts


def _number(messages: Sequence[Message], counts: dict[str, int], last: dict[str, int]) -> None:
    next_seq = {chat_id: last[chat_id] - n + 1 for chat_id, n in counts.items()}
    for message in messages:
        message.seq = next_seq[message.chat_id]
        next_seq[message.chat_id] += 1


def _entries(
    items: Sequence[Queued], counts: dict[str, int], last: dict[str, int], expires_at: datetime
) -> list[InboxEntry]:
    next_seq = {d: last[d] - n + 1 for d, n in counts.items() if d in last}
    entries = []
    for item in items:
        if item.device_id not in next_seq:  # the device was removed meanwhile
            continue
        expires = item.expires_at or (item.message.expires_at if item.message else None)
        entries.append(
            InboxEntry(
                device_id=item.device_id,
                seq=next_seq[item.device_id],
                expires_at=min(expires, expires_at) if expires else expires_at,
                message=item.message,
                event=item.event,
                user_id=item.user_id,
            )
        )
        next_seq[item.device_id] += 1
    return entries
