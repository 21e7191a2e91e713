"""A change to a message survives every form it travels in: a queue row and a bus payload."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pigeon.bus import codec
from pigeon.domain.changes import ChangeKind, MessageChange
from pigeon.domain.chats import Message, MessageKind
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import Receipt, ReceiptType
from pigeon.storage.delivery import rows

AT = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)
CHANGES = [
    MessageChange(ChangeKind.REACTION, "chat", "message", "user", AT, emoji="👍🏽"),
    MessageChange(ChangeKind.REACTION, "chat", "message", "user", AT),
    MessageChange(ChangeKind.EDITED, "chat", "message", "user", AT, text="new text"),
    MessageChange(ChangeKind.DELETED, "chat", "message", "admin", AT),
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: f"{c.kind}-{c.emoji or c.text}")
def test_a_change_reads_back_from_its_queue_row_and_its_bus_payload(
    change: MessageChange,
) -> None:
    assert rows.event_from_document(rows.event_document(change)) == change
    entry = InboxEntry("device", 7, AT, event=change)
    [decoded] = codec.decode_entries(codec.encode_entries([entry]))
    assert (decoded.device_id, decoded.seq, decoded.event) == ("device", 7, change)


def test_receipts_still_read_back_beside_changes() -> None:
    receipt = Receipt("chat", ReceiptType.READ, "user", 3, AT)
    assert rows.event_from_document(rows.event_document(receipt)) == receipt
    entries = [InboxEntry("d", 1, AT, event=receipt), InboxEntry("d", 2, AT, event=CHANGES[2])]
    assert [e.event for e in codec.decode_entries(codec.encode_entries(entries))] == [
        receipt,
        CHANGES[2],
    ]


def test_a_forwarded_reply_reads_back_from_its_bus_payload() -> None:
    message = Message(
        "m",
        "chat",
        4,
        MessageKind.TEXT,
        "user",
        "device",
        "yes!",
        AT,
        reply_to="q",
        forward_hops=6,
        quote={"senderId": "other", "excerpt": "lunch?"},
    )
    [decoded] = codec.decode_entries(codec.encode_entries([InboxEntry("d", 1, AT, message)]))
    assert decoded.message == message
