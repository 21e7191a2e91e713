"""Broadcast lists: one message, sent as a separate 1:1 message to each recipient."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

BROADCAST_NAME_MAX_LENGTH = 100


@dataclass(slots=True)
class BroadcastList:
    """A list of recipients only its owner sees and sends to."""

    id: str
    owner_id: str
    name: str
    created_at: datetime
    recipients: list[str] = field(default_factory=list)  # user ids, in the order given
