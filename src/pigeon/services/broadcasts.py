"""Broadcast lists: their owner's private lists, and sending one message to a whole list.

A broadcast is not a group: each recipient gets a separate 1:1 message from
the sender, in their 1:1 chat (made if it does not exist yet), and replies
there. As in WhatsApp, only recipients who have the sender among their
contacts get it, so a list cannot spam strangers; the others are skipped
and counted. The messages go through the group committer like any send, so a
list of 256 costs one transaction to find the chats and a batch or two.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pigeon.domain.broadcasts import BROADCAST_NAME_MAX_LENGTH, BroadcastList
from pigeon.domain.chats import Chat, ChatKind, Member, Role, direct_key
from pigeon.domain.errors import InvalidInput, NotFound, PigeonError
from pigeon.domain.ids import new_id
from pigeon.services.accounts import Principal
from pigeon.services.messaging import MessagingService, SendMessage, SendResult
from pigeon.services.ports import Clock, UnitOfWork, UnitOfWorkFactory


@dataclass(slots=True, frozen=True)
class BroadcastPolicy:
    max_recipients: int = 256
    max_message_length: int = 65536  # as for any message (PIGEON_MAX_MESSAGE_LENGTH)


@dataclass(slots=True, frozen=True)
class BroadcastDelivery:
    """One recipient's copy: the 1:1 message it became."""

    user_id: str
    result: SendResult


@dataclass(slots=True, frozen=True)
class BroadcastResult:
    list_id: str
    delivered: list[BroadcastDelivery]
    skipped: int  # recipients without the sender among their contacts


class BroadcastService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        messaging: MessagingService,
        clock: Clock,
        policy: BroadcastPolicy,
    ) -> None:
        self._uow = uow
        self._messaging = messaging
        self._clock = clock
        self._policy = policy

    # -- the lists ------------------------------------------------------------------

    async def create(self, principal: Principal, name: str, recipients: list[str]) -> BroadcastList:
        _check_name(name)
        wanted = self._check_recipients(principal, recipients)
        broadcast = BroadcastList(new_id(), principal.user_id, name, self._clock.now(), wanted)
        async with self._uow() as uow:
            await _check_users(uow, wanted)
            await uow.broadcasts.add(broadcast)
            await uow.commit()
        broadcast.recipients = sorted(wanted)
        return broadcast

    async def list_own(self, principal: Principal) -> list[BroadcastList]:
        async with self._uow(read_only=True) as uow:
            return list(await uow.broadcasts.list_for_owner(principal.user_id))

    async def get(self, principal: Principal, list_id: str) -> BroadcastList:
        async with self._uow(read_only=True) as uow:
            return await _own_list(uow, principal, list_id)

    async def update(
        self, principal: Principal, list_id: str, name: str | None, recipients: list[str] | None
    ) -> BroadcastList:
        if name is not None:
            _check_name(name)
        wanted = None if recipients is None else self._check_recipients(principal, recipients)
        async with self._uow() as uow:
            await _own_list(uow, principal, list_id)
            if wanted is not None:
                await _check_users(uow, wanted)
            await uow.broadcasts.update(list_id, name, wanted)
            updated = await _own_list(uow, principal, list_id)
            await uow.commit()
        return updated

    async def delete(self, principal: Principal, list_id: str) -> None:
        async with self._uow() as uow:
            await _own_list(uow, principal, list_id)
            await uow.broadcasts.delete(list_id)
            await uow.commit()

    def _check_recipients(self, principal: Principal, recipients: list[str]) -> list[str]:
        wanted = list(dict.fromkeys(recipients))
        if not wanted:
            raise InvalidInput("invalid_recipients", "A broadcast list needs a recipient.")
        if principal.user_id in wanted:
            raise InvalidInput("invalid_recipients", "You cannot be on your own broadcast list.")
        limit = self._policy.max_recipients
        if len(wanted) > limit:
            raise InvalidInput(
                "too_many_recipients",
                f"A broadcast list has at most {limit} recipients "
                "(the server's PIGEON_BROADCAST_MAX_RECIPIENTS setting).",
            )
        return wanted

    # -- sending --------------------------------------------------------------------

    async def send(
        self,
        principal: Principal,
        list_id: str,
        client_message_id: str,
        body: str,
        attachments: list[Any],
    ) -> BroadcastResult:
        """One 1:1 message per recipient who has the sender as a contact.

        The recipients' copies share the ``clientMessageId``: it is unique per
        device and chat, so a retried broadcast stores nothing twice.
        """
        # Checked here too: a list nobody on it would get must refuse the same input.
        limit = self._policy.max_message_length
        if len(body) > limit:
            raise InvalidInput("message_too_long", f"A message has at most {limit} characters.")
        if not body.strip() and not attachments:
            raise InvalidInput("empty_message", "A message needs text or an attachment.")
        now = self._clock.now()
        async with self._uow() as uow:
            broadcast = await _own_list(uow, principal, list_id)
            willing = await uow.people.has_as_contact(broadcast.recipients, principal.user_id)
            reached = [user_id for user_id in broadcast.recipients if user_id in willing]
            chats = await _direct_chats(uow, principal.user_id, reached, now)
            await uow.commit()
        futures = [
            self._messaging.send(
                SendMessage(principal, chats[user_id], client_message_id, body, attachments)
            )
            for user_id in reached
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        delivered = []
        failures = []
        for user_id, outcome in zip(reached, outcomes, strict=True):
            if isinstance(outcome, SendResult):
                delivered.append(BroadcastDelivery(user_id, outcome))
            elif isinstance(outcome, PigeonError):
                failures.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        if failures and not delivered:
            raise failures[0]  # the same refusal for all (an attachment the sender cannot read)
        skipped = len(broadcast.recipients) - len(delivered)
        return BroadcastResult(list_id, delivered, skipped)


async def _own_list(uow: UnitOfWork, principal: Principal, list_id: str) -> BroadcastList:
    """The caller's list; another user's list is as unknown as a list that never was."""
    found = await uow.broadcasts.get(list_id)
    if found is None or found.owner_id != principal.user_id:
        raise NotFound("broadcast_list_not_found", "No such broadcast list.")
    return found


async def _check_users(uow: UnitOfWork, user_ids: list[str]) -> None:
    for user_id in user_ids:
        if await uow.users.get(user_id) is None:
            raise NotFound("user_not_found", f"No such user: {user_id}.")


async def _direct_chats(
    uow: UnitOfWork, sender: str, recipients: list[str], now: datetime
) -> dict[str, str]:
    """Each recipient's 1:1 chat with the sender, made where there is none yet."""
    keys = {user_id: direct_key(sender, user_id) for user_id in recipients}
    found = await uow.chats.get_directs(sorted(keys.values()))
    missing = []
    for user_id, key in keys.items():
        if key not in found:
            chat = Chat(new_id(), ChatKind.DIRECT, "", sender, now, direct_key=key)
            missing.append(
                (chat, [Member(chat.id, u, Role.MEMBER, now) for u in (sender, user_id)])
            )
    found |= await uow.chats.add_directs(missing)
    return {user_id: found[key].id for user_id, key in keys.items()}


def _check_name(name: str) -> None:
    if len(name) > BROADCAST_NAME_MAX_LENGTH:
        raise InvalidInput(
            "invalid_name", f"A list name has at most {BROADCAST_NAME_MAX_LENGTH} characters."
        )
