"""Status updates and who saw them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.people import Status
from pigeon.storage.schema import attachments, status_mutes, status_views, statuses


def _status(m: Any) -> Status:
    return Status(
        id=m["id"],
        author_id=m["author_id"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        text=m["text"],
        background=m["background"],
        font=m["font"],
        attachment_id=m["attachment_id"],
        caption=m["caption"],
    )


class SqlStatusRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, status: Status) -> None:
        await self._conn.execute(
            statuses.insert().values(
                id=status.id,
                author_id=status.author_id,
                text=status.text,
                background=status.background,
                font=status.font,
                attachment_id=status.attachment_id,
                caption=status.caption,
                created_at=status.created_at,
                expires_at=status.expires_at,
            )
        )

    async def get(self, status_id: str, now: datetime) -> Status | None:
        """The status, unless it has expired (the purge may not have run yet)."""
        row = (
            await self._conn.execute(
                sa.select(statuses).where(statuses.c.id == status_id, statuses.c.expires_at > now)
            )
        ).first()
        return _status(row._mapping) if row else None

    async def current_of(self, author_ids: Sequence[str], now: datetime) -> list[Status]:
        """The authors' statuses that have not expired, newest first."""
        if not author_ids:
            return []
        rows = await self._conn.execute(
            sa.select(statuses)
            .where(statuses.c.author_id.in_(sorted(set(author_ids))), statuses.c.expires_at > now)
            .order_by(statuses.c.created_at.desc(), statuses.c.id.desc())
        )
        return [_status(row._mapping) for row in rows]

    async def delete(self, status_ids: Sequence[str], now: datetime) -> None:
        """Delete statuses; their attachments expire now, so the media purge frees them."""
        if not status_ids:
            return
        ids = sorted(set(status_ids))
        media = sa.select(statuses.c.attachment_id).where(
            statuses.c.id.in_(ids), statuses.c.attachment_id.is_not(None)
        )
        await self._conn.execute(
            attachments.update().where(attachments.c.id.in_(media)).values(expires_at=now)
        )
        await self._conn.execute(status_views.delete().where(status_views.c.status_id.in_(ids)))
        await self._conn.execute(statuses.delete().where(statuses.c.id.in_(ids)))

    async def expired(self, now: datetime) -> list[str]:
        rows = await self._conn.execute(
            sa.select(statuses.c.id).where(statuses.c.expires_at <= now)
        )
        return list(rows.scalars())

    async def add_view(self, status_id: str, viewer_id: str, now: datetime) -> None:
        """Record that ``viewer_id`` saw the status (the first time counts)."""
        seen = await self._conn.execute(
            sa.select(status_views.c.viewer_id).where(
                status_views.c.status_id == status_id, status_views.c.viewer_id == viewer_id
            )
        )
        if seen.first() is None:
            await self._conn.execute(
                status_views.insert().values(
                    status_id=status_id, viewer_id=viewer_id, viewed_at=now
                )
            )

    async def views(self, status_id: str) -> list[tuple[str, datetime]]:
        rows = await self._conn.execute(
            sa.select(status_views.c.viewer_id, status_views.c.viewed_at)
            .where(status_views.c.status_id == status_id)
            .order_by(status_views.c.viewed_at, status_views.c.viewer_id)
        )
        return [(row.viewer_id, row.viewed_at) for row in rows]

    async def mute(self, owner_id: str, muted_id: str, now: datetime) -> None:
        known = await self._conn.execute(
            sa.select(status_mutes.c.muted_id).where(
                status_mutes.c.owner_id == owner_id, status_mutes.c.muted_id == muted_id
            )
        )
        if known.first() is None:
            await self._conn.execute(
                status_mutes.insert().values(owner_id=owner_id, muted_id=muted_id, created_at=now)
            )

    async def unmute(self, owner_id: str, muted_id: str) -> None:
        await self._conn.execute(
            status_mutes.delete().where(
                status_mutes.c.owner_id == owner_id, status_mutes.c.muted_id == muted_id
            )
        )

    async def muted(self, owner_id: str) -> list[str]:
        rows = await self._conn.execute(
            sa.select(status_mutes.c.muted_id)
            .where(status_mutes.c.owner_id == owner_id)
            .order_by(status_mutes.c.muted_id)
        )
        return list(rows.scalars())
