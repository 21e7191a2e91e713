"""What devices are told besides messages: receipts (queued), typing and presence (live only).

These are the domain's words for them. The gateway turns them into frames
(``gateway/events.py``), storage into rows, a remote bus into bytes; none of
those formats leaks in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ReceiptType(StrEnum):
    DELIVERED = "delivered"
    READ = "read"


@dataclass(slots=True, frozen=True)
class Receipt:
    """``user_id``'s devices received (or the user read) the chat up to ``up_to_seq``.

    Queued like a message, so a device that was offline still learns it.
    """

    chat_id: str
    type: ReceiptType
    user_id: str
    up_to_seq: int
    at: datetime


@dataclass(slots=True, frozen=True)
class Typing:
    chat_id: str
    user_id: str
    composing: bool


@dataclass(slots=True, frozen=True)
class PresenceChange:
    """A user came online (``last_seen`` None) or went away at ``last_seen``."""

    user_id: str
    online: bool
    last_seen: datetime | None


# Told only to connections that are live now; never queued.
LiveEvent = Typing | PresenceChange


@dataclass(slots=True, frozen=True)
class StatusPosted:
    """``author_id`` posted a status the device's user may see (queued until it expires).

    Only ids and times: the status itself is read with ``GET /v1/statuses``.
    """

    status_id: str
    author_id: str
    created_at: datetime
    expires_at: datetime
