"""Notification preferences and muted chats: mine, shared by all my devices."""

from __future__ import annotations

from datetime import timedelta

from pigeon.domain.push import MUTE_SECONDS, ChatMute, MuteDuration, NotificationSettings
from pigeon.services.accounts import Principal
from pigeon.services.messaging import chat_not_found
from pigeon.services.ports import Clock, UnitOfWorkFactory


class NotificationService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def get(self, principal: Principal) -> tuple[NotificationSettings, list[ChatMute]]:
        """My preferences and the chats muted now (an expired mute is no mute)."""
        async with self._uow(read_only=True) as uow:
            settings = await uow.push.settings(principal.user_id)
            mutes = await uow.push.mutes(principal.user_id, self._clock.now())
        return settings, mutes

    async def update(
        self, principal: Principal, push: bool | None = None, previews: bool | None = None
    ) -> tuple[NotificationSettings, list[ChatMute]]:
        async with self._uow() as uow:
            current = await uow.push.settings(principal.user_id)
            changed = NotificationSettings(
                push=current.push if push is None else push,
                previews=current.previews if previews is None else previews,
            )
            await uow.push.put_settings(principal.user_id, changed)
            mutes = await uow.push.mutes(principal.user_id, self._clock.now())
            await uow.commit()
        return changed, mutes

    async def purge_expired(self) -> dict[str, int]:
        """Mutes that ended, or whose user left the chat, are kept no longer."""
        async with self._uow(housekeeping=True) as uow:
            mutes = await uow.push.purge_mutes(self._clock.now())
            await uow.commit()
        return {"mutes": mutes}

    async def mute(
        self, principal: Principal, chat_id: str, duration: MuteDuration | None
    ) -> ChatMute | None:
        """Mute a chat I am in for 8 hours, a week or always; ``None`` unmutes it."""
        async with self._uow() as uow:
            if await uow.chats.member(chat_id, principal.user_id) is None:
                raise chat_not_found()
            if duration is None:
                await uow.push.unmute(chat_id, principal.user_id)
                mute = None
            else:
                seconds = MUTE_SECONDS.get(duration)
                until = None if seconds is None else self._clock.now() + timedelta(seconds=seconds)
                await uow.push.mute(chat_id, principal.user_id, until)
                mute = ChatMute(chat_id, until)
            await uow.commit()
        return mute
