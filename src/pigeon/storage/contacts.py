"""The address book as broadcasts read it: does a user have another among their contacts."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.storage.schema import contacts


class SqlContactBook:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def has_contact(self, owner_id: str, contact_id: str) -> bool:
        return bool(await self.owners_having([owner_id], contact_id))

    async def owners_having(self, owner_ids: Sequence[str], contact_id: str) -> set[str]:
        if not owner_ids:
            return set()
        query = sa.select(contacts.c.owner_id).where(
            contacts.c.contact_id == contact_id, contacts.c.owner_id.in_(list(owner_ids))
        )
        return set((await self._conn.execute(query)).scalars())
