"""Push registrations, and what a device's queue holds that no push covered yet."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.push import (
    ChatMute,
    NotificationSettings,
    PendingPush,
    PushKind,
    PushRegistration,
)
from pigeon.services.ports import PushState
from pigeon.storage.schema import (
    chat_members,
    chat_mutes,
    inbox,
    messages,
    notification_settings,
    push_registrations,
    sent_messages,
)

_REGISTRATION_COLUMNS = ("kind", "endpoint", "p256dh", "auth", "token", "topic", "sandbox")


def _registration(row: sa.Row[Any]) -> PushRegistration:
    m = row._mapping
    return PushRegistration(
        device_id=m["device_id"],
        user_id=m["user_id"],
        kind=PushKind(m["kind"]),
        created_at=m["created_at"],
        endpoint=m["endpoint"],
        p256dh=m["p256dh"],
        auth=m["auth"],
        token=m["token"],
        topic=m["topic"],
        sandbox=bool(m["sandbox"]),
    )


def _state(row: sa.Row[Any], claimed: bool) -> PushState:
    m = row._mapping
    return PushState(
        registration=_registration(row),
        pushed_seq=int(m["pushed_seq"]),
        next_at=m["next_at"],
        lease_until=m["lease_until"],
        claimed=claimed,
    )


class SqlPushRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def put(self, registration: PushRegistration) -> None:
        values = {
            "kind": registration.kind.value,
            "endpoint": registration.endpoint,
            "p256dh": registration.p256dh,
            "auth": registration.auth,
            "token": registration.token,
            "topic": registration.topic,
            "sandbox": registration.sandbox,
        }
        assert set(values) == set(_REGISTRATION_COLUMNS)
        # A new subscription of the same device keeps how far its pushes got.
        updated = await self._conn.execute(
            push_registrations.update()
            .where(push_registrations.c.device_id == registration.device_id)
            .values(**values, created_at=registration.created_at)
        )
        if updated.rowcount == 0:
            await self._conn.execute(
                push_registrations.insert().values(
                    device_id=registration.device_id,
                    user_id=registration.user_id,
                    created_at=registration.created_at,
                    **values,
                )
            )

    async def get(self, device_id: str) -> PushRegistration | None:
        row = (
            await self._conn.execute(
                sa.select(push_registrations).where(push_registrations.c.device_id == device_id)
            )
        ).first()
        return _registration(row) if row else None

    async def delete(self, device_id: str, token: str | None = None) -> bool:
        statement = push_registrations.delete().where(push_registrations.c.device_id == device_id)
        if token is not None:  # a gone token: leave a newer registration alone
            statement = statement.where(
                (push_registrations.c.token == token) | (push_registrations.c.endpoint == token)
            )
        return (await self._conn.execute(statement)).rowcount > 0

    async def due(self) -> list[str]:
        uncovered = (
            sa.select(sa.literal(1))
            .select_from(inbox)
            .where(
                inbox.c.device_id == push_registrations.c.device_id,
                inbox.c.seq > push_registrations.c.pushed_seq,
                inbox.c.message_id.is_not(None),
            )
        )
        rows = await self._conn.execute(
            sa.select(push_registrations.c.device_id).where(uncovered.exists())
        )
        return [row[0] for row in rows]

    async def claim(self, device_id: str, now: datetime, lease_until: datetime) -> PushState | None:
        table = push_registrations
        claimed = await self._conn.execute(
            table.update()
            .where(
                table.c.device_id == device_id,
                sa.or_(table.c.lease_until.is_(None), table.c.lease_until <= now),
                sa.or_(table.c.next_at.is_(None), table.c.next_at <= now),
            )
            .values(lease_until=lease_until)
        )
        row = (
            await self._conn.execute(sa.select(table).where(table.c.device_id == device_id))
        ).first()
        return _state(row, claimed.rowcount > 0) if row else None

    async def pending(
        self, device_id: str, user_id: str, after_seq: int, now: datetime
    ) -> PendingPush | None:
        muted = [mute.chat_id for mute in await self.mutes(user_id, now)]
        joined = inbox.join(messages, messages.c.id == inbox.c.message_id)
        from_others = sa.and_(
            inbox.c.device_id == device_id,
            sa.or_(messages.c.sender_id.is_(None), messages.c.sender_id != user_id),
        )
        columns = (inbox.c.seq, messages.c.chat_id, messages.c.sender_id)
        audible = sa.and_(from_others, messages.c.chat_id.not_in(muted)) if muted else from_others
        latest = (
            await self._conn.execute(
                sa.select(*columns)
                .select_from(joined)
                .where(audible)
                .order_by(inbox.c.seq.desc())
                .limit(1)
            )
        ).first()
        unread = (
            await self._conn.execute(sa.select(sa.func.count()).select_from(joined).where(audible))
        ).scalar_one()
        candidates = [(int(latest.seq), latest.chat_id, latest.sender_id)] if latest else []
        if muted:  # a muted chat still wakes me for a mention of me, or a reply to me
            rows = await self._conn.execute(
                sa.select(*columns, messages.c.mentions, messages.c.reply_to)
                .select_from(joined)
                .where(
                    from_others,
                    messages.c.chat_id.in_(muted),
                    sa.or_(messages.c.mentions.is_not(None), messages.c.reply_to.is_not(None)),
                )
            )
            mentioned = [
                (int(r.seq), r.chat_id, r.sender_id)
                for r in rows.all()
                if user_id in (r.mentions or [])
                or (r.reply_to and await self._sent_by(r.chat_id, r.reply_to, user_id))
            ]
            unread += len(mentioned)
            candidates += mentioned
        if not candidates:
            return None
        seq, chat_id, sender_id = max(candidates)
        if seq <= after_seq:
            return None
        return PendingPush(
            up_to_seq=seq, unread=int(unread), chat_id=chat_id, sender_id=sender_id or ""
        )

    async def _sent_by(self, chat_id: str, message_id: str, user_id: str) -> bool:
        """Whether ``user_id`` sent the message: its send record outlives the message
        (kept for the undelivered TTL), so a reply to an old message still finds it."""
        found = await self._conn.execute(
            sa.select(sa.literal(1)).where(
                sent_messages.c.chat_id == chat_id,
                sent_messages.c.message_id == message_id,
                sent_messages.c.sender_id == user_id,
            )
        )
        return found.first() is not None

    async def purge_mutes(self, now: datetime) -> int:
        membership = (
            sa.select(sa.literal(1))
            .select_from(chat_members)
            .where(
                chat_members.c.chat_id == chat_mutes.c.chat_id,
                chat_members.c.user_id == chat_mutes.c.user_id,
            )
        )
        result = await self._conn.execute(
            chat_mutes.delete().where(sa.or_(chat_mutes.c.muted_until <= now, ~membership.exists()))
        )
        return int(result.rowcount)

    async def settings(self, user_id: str) -> NotificationSettings:
        row = (
            await self._conn.execute(
                sa.select(notification_settings).where(notification_settings.c.user_id == user_id)
            )
        ).first()
        if row is None:
            return NotificationSettings()
        return NotificationSettings(push=bool(row.push), previews=bool(row.previews))

    async def put_settings(self, user_id: str, settings: NotificationSettings) -> None:
        table = notification_settings
        values = {"push": settings.push, "previews": settings.previews}
        updated = await self._conn.execute(
            table.update().where(table.c.user_id == user_id).values(**values)
        )
        if updated.rowcount == 0:
            await self._conn.execute(table.insert().values(user_id=user_id, **values))

    async def mute(self, chat_id: str, user_id: str, until: datetime | None) -> None:
        await self.unmute(chat_id, user_id)
        await self._conn.execute(
            chat_mutes.insert().values(chat_id=chat_id, user_id=user_id, muted_until=until)
        )

    async def unmute(self, chat_id: str, user_id: str) -> None:
        await self._conn.execute(
            chat_mutes.delete().where(
                chat_mutes.c.chat_id == chat_id, chat_mutes.c.user_id == user_id
            )
        )

    async def mutes(self, user_id: str, now: datetime) -> list[ChatMute]:
        rows = await self._conn.execute(
            sa.select(chat_mutes.c.chat_id, chat_mutes.c.muted_until)
            .where(
                chat_mutes.c.user_id == user_id,
                sa.or_(chat_mutes.c.muted_until.is_(None), chat_mutes.c.muted_until > now),
            )
            .order_by(chat_mutes.c.chat_id)
        )
        return [ChatMute(r.chat_id, r.muted_until) for r in rows]

    async def covered(self, device_id: str, up_to_seq: int, next_at: datetime | None) -> None:
        table = push_registrations
        await self._conn.execute(
            table.update()
            .where(table.c.device_id == device_id)
            .values(
                pushed_seq=sa.case(
                    (table.c.pushed_seq > up_to_seq, table.c.pushed_seq), else_=up_to_seq
                ),
                next_at=next_at,
                lease_until=None,
            )
        )
