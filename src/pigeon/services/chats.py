"""1:1 chats and groups: creating them, membership, roles and names.

Every change to a group becomes a system message in it, written in the same
transaction as the change and delivered like any other message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pigeon.domain.chats import (
    DISAPPEARING_TIMERS,
    GROUP_NAME_MAX_LENGTH,
    Chat,
    ChatKind,
    Member,
    Message,
    MessageKind,
    Role,
    direct_key,
    may_add,
    may_remove,
    may_set_disappearing,
)
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from pigeon.domain.ids import new_id
from pigeon.services import fanout
from pigeon.services.accounts import Principal
from pigeon.services.fanout import Queued
from pigeon.services.messaging import chat_not_found
from pigeon.services.ports import Bus, Clock, UnitOfWork, UnitOfWorkFactory
from pigeon.services.visibility import refusing_adds


@dataclass(slots=True, frozen=True)
class ChatPolicy:
    max_group_members: int = 100
    undelivered_ttl: timedelta = timedelta(days=30)
    membership_cache_seconds: float = 5.0


class MembershipCache:
    """Who is in a chat, for the frequent checks that write nothing (typing).

    Entries are dropped on every local membership change and live at most
    ``ttl`` seconds, which bounds staleness when another node made the change.
    Sends never use it: their batch reads membership in its own transaction.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, frozenset[str]]] = {}

    def get(self, chat_id: str) -> frozenset[str] | None:
        entry = self._entries.get(chat_id)
        if entry is None or time.monotonic() - entry[0] > self._ttl:
            return None
        return entry[1]

    def put(self, chat_id: str, user_ids: frozenset[str]) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[chat_id] = (time.monotonic(), user_ids)

    def forget(self, chat_id: str) -> None:
        self._entries.pop(chat_id, None)


class ChatService:
    def __init__(self, uow: UnitOfWorkFactory, bus: Bus, clock: Clock, policy: ChatPolicy) -> None:
        self._uow = uow
        self._bus = bus
        self._clock = clock
        self._policy = policy
        self.members_cache = MembershipCache(policy.membership_cache_seconds)

    # -- creating ------------------------------------------------------------

    async def create_chat(
        self, principal: Principal, participants: list[str], name: str | None
    ) -> tuple[str, bool]:
        """A 1:1 chat (two people, no name; the existing one if any) or a group.

        Returns the chat id and whether it was created now.
        """
        others = sorted(set(participants) - {principal.user_id})
        if not others:
            raise InvalidInput("invalid_participants", "A chat needs someone else in it.")
        if name is not None:
            _check_group_name(name)
        if len(others) + 1 > self._policy.max_group_members:
            raise Conflict(
                "group_full", f"A group has at most {self._policy.max_group_members} members."
            )
        now = self._clock.now()
        async with self._uow() as uow:
            for user_id in others:
                if await uow.users.get(user_id) is None:
                    raise NotFound("user_not_found", f"No such user: {user_id}.")
            if len(others) == 1 and name is None:
                key = direct_key(principal.user_id, others[0])
                existing = await uow.chats.get_direct(key)
                if existing is not None:
                    return existing.id, False
                chat = Chat(new_id(), ChatKind.DIRECT, "", principal.user_id, now, direct_key=key)
                members = [
                    Member(chat.id, u, Role.MEMBER, now) for u in (principal.user_id, *others)
                ]
                stored = await uow.chats.add_direct(chat, members)
                await uow.commit()
                return stored.id, stored.id == chat.id
            await _check_adds(uow, principal.user_id, others)
            chat = Chat(new_id(), ChatKind.GROUP, name or "", principal.user_id, now)
            members = [Member(chat.id, principal.user_id, Role.ADMIN, now)]
            members += [Member(chat.id, u, Role.MEMBER, now) for u in others]
            await uow.chats.add(chat, members)
            system = {
                "action": "created",
                "actorId": principal.user_id,
                "name": chat.name,
                "members": [principal.user_id, *others],
            }
            entries = await self._system_message(uow, chat.id, system, now)
            await uow.commit()
        self._bus.publish(entries)
        return chat.id, True

    # -- membership ----------------------------------------------------------

    async def add_member(self, principal: Principal, chat_id: str, user_id: str) -> None:
        now = self._clock.now()
        async with self._uow() as uow:
            chat, actor = await self._group_member(uow, principal, chat_id)
            if not may_add(actor):
                raise Forbidden("not_admin", "Only admins can add members.")
            if await uow.users.get(user_id) is None:
                raise NotFound("user_not_found", "No such user.")
            if await uow.chats.member(chat_id, user_id) is not None:
                raise Conflict("already_member", "The user is already in the group.")
            await _check_adds(uow, principal.user_id, [user_id])
            if await uow.chats.count_members(chat_id) >= self._policy.max_group_members:
                raise Conflict(
                    "group_full", f"A group has at most {self._policy.max_group_members} members."
                )
            await uow.chats.add_member(Member(chat_id, user_id, Role.MEMBER, now))
            system = {"action": "added", "actorId": principal.user_id, "userId": user_id}
            entries = await self._system_message(uow, chat.id, system, now)
            await uow.commit()
        self.members_cache.forget(chat_id)
        self._bus.publish(entries)

    async def remove_member(self, principal: Principal, chat_id: str, user_id: str) -> None:
        """Admins remove anyone; anyone may leave. The last admin leaving promotes someone."""
        now = self._clock.now()
        async with self._uow() as uow:
            chat, actor = await self._group_member(uow, principal, chat_id)
            if not may_remove(actor, user_id):
                raise Forbidden("not_admin", "Only admins can remove other members.")
            target = await uow.chats.member(chat_id, user_id)
            if target is None:
                raise NotFound("not_member", "The user is not in the group.")
            removed_devices = (await uow.delivery.devices_of([user_id])).get(user_id, [])
            await uow.chats.remove_member(chat_id, user_id)
            action = "left" if user_id == principal.user_id else "removed"
            system: dict[str, Any] = {
                "action": action,
                "actorId": principal.user_id,
                "userId": user_id,
            }
            removed = (user_id, removed_devices)
            entries = await self._system_message(uow, chat.id, system, now, removed)
            entries += await self._keep_an_admin(uow, chat_id, now)
            await uow.commit()
        self.members_cache.forget(chat_id)
        self._bus.publish(entries)

    async def set_role(self, principal: Principal, chat_id: str, user_id: str, role: Role) -> None:
        now = self._clock.now()
        async with self._uow() as uow:
            chat, actor = await self._group_member(uow, principal, chat_id)
            if actor.role is not Role.ADMIN:
                raise Forbidden("not_admin", "Only admins can change roles.")
            target = await uow.chats.member(chat_id, user_id)
            if target is None:
                raise NotFound("not_member", "The user is not in the group.")
            if target.role is role:
                return
            if role is Role.MEMBER and await self._admin_count(uow, chat_id) <= 1:
                raise Conflict("last_admin", "A group needs at least one admin.")
            await uow.chats.set_role(chat_id, user_id, role)
            system = {
                "action": "role",
                "actorId": principal.user_id,
                "userId": user_id,
                "role": role.value,
            }
            entries = await self._system_message(uow, chat.id, system, now)
            await uow.commit()
        self._bus.publish(entries)

    async def rename(self, principal: Principal, chat_id: str, name: str) -> None:
        _check_group_name(name)
        now = self._clock.now()
        async with self._uow() as uow:
            chat, actor = await self._group_member(uow, principal, chat_id)
            if actor.role is not Role.ADMIN:
                raise Forbidden("not_admin", "Only admins can rename the group.")
            await uow.chats.rename(chat_id, name)
            system = {"action": "renamed", "actorId": principal.user_id, "name": name}
            entries = await self._system_message(uow, chat.id, system, now)
            await uow.commit()
        self._bus.publish(entries)

    async def set_disappearing(self, principal: Principal, chat_id: str, seconds: int) -> None:
        """Turn disappearing messages on (for messages sent from now on) or off.

        Any member of a 1:1 chat may, an admin of a group; a system message says so.
        """
        if seconds not in DISAPPEARING_TIMERS:
            choices = ", ".join(str(s) for s in DISAPPEARING_TIMERS)
            raise InvalidInput(
                "invalid_disappearing_timer",
                f"A disappearing timer is one of {choices} seconds (0 turns it off).",
            )
        now = self._clock.now()
        async with self._uow() as uow:
            chat = await uow.chats.get(chat_id)
            actor = await uow.chats.member(chat_id, principal.user_id) if chat else None
            if chat is None or actor is None:
                raise chat_not_found()
            if not may_set_disappearing(chat, actor):
                raise Forbidden("not_admin", "Only admins can change the disappearing timer.")
            await uow.chats.set_disappearing(chat_id, seconds)
            system = {"action": "disappearing", "actorId": principal.user_id, "seconds": seconds}
            entries = await self._system_message(uow, chat.id, system, now)
            await uow.commit()
        self._bus.publish(entries)

    # -- reading -------------------------------------------------------------

    async def list_chats(self, principal: Principal) -> list[tuple[Chat, Member]]:
        """The caller's chats, each with the caller's own membership."""
        async with self._uow(read_only=True) as uow:
            return list(await uow.chats.memberships(principal.user_id))

    async def get_chat(self, principal: Principal, chat_id: str) -> tuple[Chat, list[Member]]:
        """A chat the caller is in, with its members, oldest first."""
        async with self._uow(read_only=True) as uow:
            chat = await uow.chats.get(chat_id)
            members = list(await uow.chats.members(chat_id)) if chat else []
        if chat is None or principal.user_id not in {m.user_id for m in members}:
            raise chat_not_found()
        return chat, members

    async def member_ids(self, chat_id: str) -> frozenset[str]:
        """The chat's members, from the cache when fresh (for typing and the like)."""
        cached = self.members_cache.get(chat_id)
        if cached is not None:
            return cached
        async with self._uow(read_only=True) as uow:
            members = frozenset(m.user_id for m in await uow.chats.members(chat_id))
        self.members_cache.put(chat_id, members)
        return members

    # -- internals -----------------------------------------------------------

    async def _group_member(
        self, uow: UnitOfWork, principal: Principal, chat_id: str
    ) -> tuple[Chat, Member]:
        chat = await uow.chats.get(chat_id)
        actor = await uow.chats.member(chat_id, principal.user_id) if chat else None
        if chat is None or actor is None:
            raise chat_not_found()
        if chat.kind is not ChatKind.GROUP:
            raise InvalidInput("not_a_group", "1:1 chats have no members to change.")
        return chat, actor

    async def _admin_count(self, uow: UnitOfWork, chat_id: str) -> int:
        return sum(m.role is Role.ADMIN for m in await uow.chats.members(chat_id))

    async def _keep_an_admin(
        self, uow: UnitOfWork, chat_id: str, now: datetime
    ) -> list[InboxEntry]:
        """When the last admin left, the longest-standing member becomes admin."""
        members = await uow.chats.members(chat_id)
        if not members or any(m.role is Role.ADMIN for m in members):
            return []
        heir = members[0]
        await uow.chats.set_role(chat_id, heir.user_id, Role.ADMIN)
        system = {"action": "role", "actorId": None, "userId": heir.user_id, "role": "admin"}
        return await self._system_message(uow, chat_id, system, now)

    async def _system_message(
        self,
        uow: UnitOfWork,
        chat_id: str,
        system: dict[str, Any],
        now: datetime,
        removed: tuple[str, list[str]] | None = None,
    ) -> list[InboxEntry]:
        message = Message(
            id=new_id(),
            chat_id=chat_id,
            seq=0,
            kind=MessageKind.SYSTEM,
            sender_id=None,
            sender_device_id=None,
            body="",
            created_at=now,
            system=system,
        )
        await fanout.assign_seqs(uow, [message])
        await uow.delivery.insert_messages([message])
        members = (await uow.delivery.member_devices([chat_id])).get(chat_id, {})
        items = [Queued(d, u, message=message) for u, devices in members.items() for d in devices]
        if removed is not None:  # told after leaving: the last message they get of the chat
            user_id, devices = removed
            items += [Queued(d, user_id, message=message) for d in devices]
        return await fanout.enqueue(uow, items, now + self._policy.undelivered_ttl)


async def _check_adds(uow: UnitOfWork, adder_id: str, user_ids: list[str]) -> None:
    """Refuse a group add that someone's privacy settings (or a block) do not allow."""
    refused = await refusing_adds(uow, adder_id, user_ids)
    if refused:
        raise Forbidden(
            "group_add_not_allowed",
            f"These people cannot be added to groups by you: {', '.join(sorted(refused))}. "
            "Send them an invite in a 1:1 chat instead.",
        )


def _check_group_name(name: str) -> None:
    if not name.strip() or len(name) > GROUP_NAME_MAX_LENGTH:
        raise InvalidInput(
            "invalid_name", f"A group name has 1 to {GROUP_NAME_MAX_LENGTH} characters."
        )
