"""Broadcast lists and their recipients."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.broadcasts import BroadcastList
from pigeon.storage.schema import broadcast_lists, broadcast_recipients


class SqlBroadcastRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, broadcast: BroadcastList) -> None:
        await self._conn.execute(
            broadcast_lists.insert().values(
                id=broadcast.id,
                owner_id=broadcast.owner_id,
                name=broadcast.name,
                created_at=broadcast.created_at,
            )
        )
        await self._set_recipients(broadcast.id, broadcast.recipients)

    async def get(self, list_id: str) -> BroadcastList | None:
        query = sa.select(broadcast_lists).where(broadcast_lists.c.id == list_id)
        row = (await self._conn.execute(query)).first()
        if row is None:
            return None
        found = await self._with_recipients([row])
        return found[0]

    async def list_for_owner(self, owner_id: str) -> Sequence[BroadcastList]:
        query = (
            sa.select(broadcast_lists)
            .where(broadcast_lists.c.owner_id == owner_id)
            .order_by(broadcast_lists.c.id)
        )
        return await self._with_recipients(list((await self._conn.execute(query)).all()))

    async def update(self, list_id: str, name: str | None, recipients: list[str] | None) -> None:
        if name is not None:
            await self._conn.execute(
                broadcast_lists.update().where(broadcast_lists.c.id == list_id).values(name=name)
            )
        if recipients is not None:
            await self._conn.execute(
                broadcast_recipients.delete().where(broadcast_recipients.c.list_id == list_id)
            )
            await self._set_recipients(list_id, recipients)

    async def delete(self, list_id: str) -> None:
        await self._conn.execute(
            broadcast_recipients.delete().where(broadcast_recipients.c.list_id == list_id)
        )
        await self._conn.execute(broadcast_lists.delete().where(broadcast_lists.c.id == list_id))

    async def _set_recipients(self, list_id: str, recipients: list[str]) -> None:
        if recipients:
            await self._conn.execute(
                broadcast_recipients.insert(),
                [{"list_id": list_id, "user_id": user_id} for user_id in recipients],
            )

    async def _with_recipients(
        self, rows: list[sa.Row[tuple[str, str, str, object]]]
    ) -> list[BroadcastList]:
        lists = {
            row.id: BroadcastList(row.id, row.owner_id, row.name, row.created_at) for row in rows
        }
        if lists:
            query = (
                sa.select(broadcast_recipients.c.list_id, broadcast_recipients.c.user_id)
                .where(broadcast_recipients.c.list_id.in_(list(lists)))
                .order_by(broadcast_recipients.c.user_id)
            )
            for list_id, user_id in await self._conn.execute(query):
                lists[list_id].recipients.append(user_id)
        return list(lists.values())
