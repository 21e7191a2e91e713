"""Whether the other members have received and read this user's messages.

A message is *delivered* once every member who was in the chat when it was
sent has a device that received it, and *read* once every one of them read
it; read implies delivered. In a 1:1 chat that is the other person. The
marks come from the receipts in the local store (``MemberReceipts``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pigeon.client import ChatMember, MemberReceipts, StoredMessage

State = Literal["sent", "delivered", "read"]
_RANK: dict[State, int] = {"sent": 0, "delivered": 1, "read": 2}


@dataclass(frozen=True, slots=True)
class MemberState:
    user_id: str
    state: State


class DeliveryStatus:
    """The state of this user's messages in one chat, for its current members."""

    def __init__(self, me: str, members: Iterable[ChatMember]) -> None:
        self.me = me
        self.members = [member for member in members if member.user_id != me]

    def per_member(
        self, message: StoredMessage, receipts: dict[str, MemberReceipts]
    ) -> list[MemberState]:
        """Each member who was there when ``message`` was sent, and how far they got."""
        states = []
        for member in self.members:
            if member.joined_at > message.created_at:
                continue  # joined later: the message was never theirs
            marks = receipts.get(member.user_id)
            state: State = "sent"
            if marks is not None and marks.read_seq >= message.seq:
                state = "read"
            elif marks is not None and marks.delivered_seq >= message.seq:
                state = "delivered"
            states.append(MemberState(member.user_id, state))
        return states

    def of(self, message: StoredMessage, receipts: dict[str, MemberReceipts]) -> State:
        """The state every recipient has reached (``sent`` when there is none)."""
        states = [entry.state for entry in self.per_member(message, receipts)]
        if not states:
            return "sent"
        return min(states, key=_RANK.__getitem__)


class ReceiptProgress:
    """What changed since last asked: the lines ``open`` prints as receipts arrive.

    It reports the highest own message that became delivered or read, once;
    "read" covers "delivered" (a message read before its delivered receipt
    came is reported read, and never delivered after that).
    """

    def __init__(self, status: DeliveryStatus) -> None:
        self.status = status
        self.delivered = 0  # highest own seq reported delivered (or read)
        self.read = 0  # highest own seq reported read

    def advance(
        self, own: Sequence[StoredMessage], receipts: dict[str, MemberReceipts]
    ) -> list[tuple[State, int]]:
        read = delivered = 0
        for message in own:
            state = self.status.of(message, receipts)
            if state == "read":
                read = max(read, message.seq)
            if state in ("read", "delivered"):
                delivered = max(delivered, message.seq)
        changes: list[tuple[State, int]] = []
        if read > self.read:
            self.read = read
            self.delivered = max(self.delivered, read)
            changes.append(("read", read))
        if delivered > self.delivered:
            self.delivered = delivered
            changes.insert(0, ("delivered", delivered))
        return changes
