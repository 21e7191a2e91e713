"""Forwarded messages and the quotes of replies, settled while a batch's sends are applied.

A forward names the message it forwards (``forwardedFrom``); the server
counts the hops from that message's send record, which the forwarder must be
able to see (a member of its chat, and not deleted), so the count cannot be
reset by a client that claims an unknown origin. A message forwarded many
times (``domain.changes.FORWARDED_MANY_TIMES``) goes to one chat at a time:
the same user may forward it again only ``many_interval`` later.

A reply's quote carries the excerpt the sender's client gave (the server never
reads message text, so it cannot make one) and the quoted message's sender,
from its send record, so a client can render the quote when the quoted
message is gone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pigeon.domain.changes import forwarded_many_times
from pigeon.domain.chats import Message
from pigeon.domain.errors import InvalidInput, PigeonError, RateLimited
from pigeon.services.accounts import Principal
from pigeon.services.changes import message_not_found
from pigeon.services.ports import UnitOfWork


@dataclass(slots=True, frozen=True)
class ForwardPolicy:
    many_interval: timedelta = timedelta(seconds=60)
    excerpt_max_length: int = 200


class Send(Protocol):
    """What this module reads of a send (``messaging.SendMessage``)."""

    @property
    def principal(self) -> Principal: ...
    @property
    def chat_id(self) -> str: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def reply_excerpt(self) -> str | None: ...
    @property
    def forwarded_from(self) -> tuple[str, str] | None: ...


def check(send: Send, policy: ForwardPolicy) -> None:
    """What can be refused before the committer: the excerpt's length."""
    limit = policy.excerpt_max_length
    if send.reply_excerpt is not None and len(send.reply_excerpt) > limit:
        raise InvalidInput(
            "reply_excerpt_too_long", f"A reply's excerpt has at most {limit} characters."
        )


async def settle(
    uow: UnitOfWork,
    sends: Sequence[tuple[int, Send, Message]],
    now: datetime,
    policy: ForwardPolicy,
) -> dict[int, PigeonError]:
    """Set the forward count and the quote on each new message; the sends refused, by index."""
    refused: dict[int, PigeonError] = {}
    claimed: set[tuple[str, str]] = set()  # many-times forwards earlier in this batch
    for index, send, message in sends:
        if send.forwarded_from is not None:
            error = await _forward(uow, send, message, now, policy, claimed)
            if error is not None:
                refused[index] = error
                continue
        if send.reply_to is not None and send.reply_excerpt is not None:
            quoted = await uow.changes.find(send.chat_id, send.reply_to)
            sender = quoted.sender_id if quoted is not None else None
            message.quote = {"senderId": sender, "excerpt": send.reply_excerpt}
    return refused


async def _forward(
    uow: UnitOfWork,
    send: Send,
    message: Message,
    now: datetime,
    policy: ForwardPolicy,
    claimed: set[tuple[str, str]],
) -> PigeonError | None:
    assert send.forwarded_from is not None
    chat_id, message_id = send.forwarded_from
    user = send.principal.user_id
    original = await uow.changes.find(chat_id, message_id)
    if original is None or original.gone(now) or await uow.chats.member(chat_id, user) is None:
        return message_not_found()
    if forwarded_many_times(original.forward_hops):
        key = (user, original.message_id)
        interval = policy.many_interval
        last = (
            now
            if key in claimed
            else await uow.changes.last_forward(original.message_id, user, now - interval)
        )
        if last is not None:
            wait = math.ceil((last + interval - now).total_seconds())
            return RateLimited(
                "forward_limited",
                "This message was forwarded many times: it goes to one chat at a time.",
                wait,
            )
        claimed.add(key)
    message.forward_hops = original.forward_hops + 1
    return None
