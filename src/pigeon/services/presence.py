"""Presence (online, last seen) and typing: told only to people who share a chat.

None of this is queued: it goes to connections that are live right now.
"""

from __future__ import annotations

from typing import Any

from pigeon.services.accounts import Principal
from pigeon.services.chats import ChatService
from pigeon.services.events import timestamp
from pigeon.services.messaging import chat_not_found
from pigeon.services.ports import Bus, Clock, UnitOfWorkFactory


class PresenceService:
    def __init__(self, uow: UnitOfWorkFactory, bus: Bus, clock: Clock, chats: ChatService) -> None:
        self._uow = uow
        self._bus = bus
        self._clock = clock
        self._chats = chats

    async def announce(self, principal: Principal, online: bool) -> None:
        """Tell the user's contacts that they came online or went away."""
        now = self._clock.now()
        async with self._uow(read_only=online) as uow:
            if not online:
                await uow.users.set_last_seen(principal.user_id, now)
            contacts = await uow.chats.contacts(principal.user_id)
            await uow.commit()
        event = {
            "event": "presence",
            "data": {
                "userId": principal.user_id,
                "state": "online" if online else "offline",
                "lastSeen": None if online else timestamp(now),
            },
        }
        await self._bus.publish_ephemeral(sorted(contacts), event)

    async def query(self, principal: Principal, user_ids: list[str]) -> list[dict[str, Any]]:
        """Presence of those of ``user_ids`` who share a chat with the caller."""
        async with self._uow(read_only=True) as uow:
            contacts = await uow.chats.contacts(principal.user_id)
            visible = [u for u in dict.fromkeys(user_ids) if u in contacts]
            users = {u: await uow.users.get(u) for u in visible}
        online = self._bus.online_users(visible)
        result = []
        for user_id in visible:
            user = users[user_id]
            last_seen = user.last_seen_at if user else None
            result.append(
                {
                    "userId": user_id,
                    "state": "online" if user_id in online else "offline",
                    "lastSeen": timestamp(last_seen)
                    if last_seen and user_id not in online
                    else None,
                }
            )
        return result

    async def typing(self, principal: Principal, chat_id: str, state: str) -> None:
        members = await self._chats.member_ids(chat_id)
        if principal.user_id not in members:
            raise chat_not_found()
        event = {
            "event": "typing",
            "data": {"chatId": chat_id, "userId": principal.user_id, "state": state},
        }
        await self._bus.publish_ephemeral(sorted(members - {principal.user_id}), event)
