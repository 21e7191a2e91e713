"""Changes to a message already sent: reactions, edits and deletes for everyone.

The server keeps no message after delivery, so a change travels as an event
of its own, queued for every device of the chat behind what came before it:
a device that was offline meanwhile receives the message (if it was still
queued) and then its changes, in order, and converges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import emoji

# A message forwarded this many times or more is "forwarded many times": clients
# label it so, and it may be forwarded to one chat at a time (WhatsApp's rule
# against viral spam). Part of the protocol's meaning, as the flag shows it.
FORWARDED_MANY_TIMES = 5


def forwarded_many_times(hops: int) -> bool:
    return hops >= FORWARDED_MANY_TIMES


class ChangeKind(StrEnum):
    REACTION = "reaction"
    EDITED = "edited"
    DELETED = "deleted"


@dataclass(slots=True, frozen=True)
class MessageChange:
    """``user_id`` changed message ``message_id`` of ``chat_id`` at ``at``.

    ``emoji`` is the reaction (empty: the user's reaction was removed);
    ``text`` is an edit's new text. Each is empty for the other kinds.
    """

    kind: ChangeKind
    chat_id: str
    message_id: str
    user_id: str
    at: datetime
    emoji: str = ""
    text: str = ""


@dataclass(slots=True, frozen=True)
class MessageRecord:
    """What the server still knows of a sent message once it left every queue (no text)."""

    message_id: str
    chat_id: str
    seq: int
    sender_id: str | None
    created_at: datetime
    has_attachments: bool
    forward_hops: int
    deleted: bool
    expires_at: datetime | None = None  # a disappearing message's expiry

    def gone(self, now: datetime) -> bool:
        """Deleted for everyone, or a disappearing message past its time: nothing to change."""
        return self.deleted or (self.expires_at is not None and self.expires_at <= now)


def is_reaction(value: str) -> bool:
    """One emoji (a single grapheme cluster that Unicode lists as an emoji), or empty.

    The ``emoji`` package carries Unicode's emoji list, sequences (flags,
    skin tones, families joined by ZWJ) included, so "👍🏽" and "👨‍👩‍👧" pass
    and "ab", "👍👍" or "👍 " do not. A component alone (a skin-tone
    modifier, a hair style) is part of an emoji, not one.
    """
    if value == "":
        return True
    data = emoji.EMOJI_DATA.get(value)
    return data is not None and data["status"] != emoji.STATUS["component"]
