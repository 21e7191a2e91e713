"""Writing messages and queue entries inside a caller's transaction.

Both the group committer (sends, acks, reads) and the chat service (system
messages about membership) append through here, so seq allocation and
queueing work the same way everywhere. Publishing what was appended is the
caller's job, after its commit (``Bus.publish``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pigeon.domain.chats import Message
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import QueuedEvent
from pigeon.services.ports import UnitOfWork


@dataclass(slots=True)
class Queued:
    """One item to queue for one device (of ``user_id``): a message or a receipt."""

    device_id: str
    user_id: str
    message: Message | None = None
    event: QueuedEvent | None = None


async def assign_seqs(uow: UnitOfWork, messages: Sequence[Message]) -> None:
    """Give each message the next seq of its chat, in list order."""
    counts: dict[str, int] = defaultdict(int)
    for message in messages:
        counts[message.chat_id] += 1
    last = await uow.delivery.allocate_chat_seqs(counts)
    next_seq = {chat_id: last[chat_id] - n + 1 for chat_id, n in counts.items()}
    for message in messages:
        message.seq = next_seq[message.chat_id]
        next_seq[message.chat_id] += 1


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
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item.device_id] += 1
    last = await uow.delivery.allocate_inbox_seqs(counts)
    next_seq = {d: last[d] - n + 1 for d, n in counts.items() if d in last}
    entries = []
    for item in items:
        if item.device_id not in next_seq:  # the device was removed meanwhile
            continue
        entries.append(
            InboxEntry(
                device_id=item.device_id,
                seq=next_seq[item.device_id],
                expires_at=expires_at,
                message=item.message,
                event=item.event,
                user_id=item.user_id,
            )
        )
        next_seq[item.device_id] += 1
    return entries
