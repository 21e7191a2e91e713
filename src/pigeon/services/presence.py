"""Presence (online, last seen) and typing: told only to people who share a chat.

Of those, only the ones the user's privacy setting for last seen allows, and
never someone the user blocked (``services.visibility``); typing in a 1:1
chat does not reach a member who blocked the typist.

None of this is queued: it goes to connections that are live right now, on
any node. Whether someone is online is the shared directory's answer
(``Presence``), not this node's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

from pigeon.domain.events import PresenceChange, Typing
from pigeon.services.accounts import Principal
from pigeon.services.batching import BatchedLookup
from pigeon.services.chats import ChatService
from pigeon.services.messaging import chat_not_found
from pigeon.services.ports import Bus, Clock, Presence, UnitOfWorkFactory
from pigeon.services.visibility import seen_by, watchers


@dataclass(slots=True, frozen=True)
class UserPresence:
    user_id: str
    online: bool
    last_seen: datetime | None  # None while online, or if never seen


class PresenceService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        bus: Bus,
        directory: Presence,
        clock: Clock,
        chats: ChatService,
    ) -> None:
        self._uow = uow
        self._bus = bus
        self._directory = directory
        self._clock = clock
        self._chats = chats
        # Users coming online together (a reconnect storm) are looked up in one read.
        self._watchers: BatchedLookup[str, AbstractSet[str]] = BatchedLookup(
            self._watchers_of, frozenset()
        )

    async def announce(self, principal: Principal, online: bool) -> None:
        """Tell the user's contacts that they came online or went away."""
        now = self._clock.now()
        if not online:
            async with self._uow() as uow:
                await uow.users.set_last_seen(principal.user_id, now)
                await uow.commit()
        # Who is told is read apart from the write: SQLite's one writer is not held
        # for it (the group committer shares that writer).
        told = await self._watchers.get(principal.user_id)
        event = PresenceChange(principal.user_id, online, None if online else now)
        self._bus.notify(sorted(told), event)

    async def _watchers_of(self, user_ids: Sequence[str]) -> Mapping[str, AbstractSet[str]]:
        async with self._uow(read_only=True) as uow:
            return await watchers(uow, user_ids)

    async def connection_closed(self, principal: Principal) -> None:
        """A connection of the user closed: they went away if it was their last, on any node."""
        if not await self._directory.online_users([principal.user_id]):
            await self.announce(principal, online=False)

    async def query(self, principal: Principal, user_ids: Sequence[str]) -> list[UserPresence]:
        """Presence of those of ``user_ids`` who share a chat with the caller and show it
        to the caller (their privacy settings, blocks)."""
        async with self._uow(read_only=True) as uow:
            contacts = await uow.chats.contacts(principal.user_id)
            sharing = [u for u in dict.fromkeys(user_ids) if u in contacts]
            seen = await seen_by(uow, principal.user_id, sharing)
            visible = [u for u in sharing if seen[u].last_seen]
            users = {u: await uow.users.get(u) for u in visible}
        online = await self._directory.online_users(visible)
        result = []
        for user_id in visible:
            user = users[user_id]
            last_seen = None if user is None or user_id in online else user.last_seen_at
            result.append(UserPresence(user_id, user_id in online, last_seen))
        return result

    async def typing(self, principal: Principal, chat_id: str, composing: bool) -> None:
        members = await self._chats.member_ids(chat_id)
        if principal.user_id not in members:
            raise chat_not_found()
        others = members - {principal.user_id}
        if len(others) == 1:  # maybe a 1:1 chat: a member who blocked the typist is not told
            async with self._uow(read_only=True) as uow:
                blockers = await uow.delivery.direct_blocks([chat_id], [principal.user_id])
            others -= {blocker for _, blocker, _ in blockers}
        event = Typing(chat_id, principal.user_id, composing)
        self._bus.notify(sorted(others), event)
