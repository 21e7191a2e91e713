"""Chats and their members."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.chats import Chat, ChatKind, Member, Role
from pigeon.storage.asyncpg_reads import ConnectRead, among
from pigeon.storage.schema import chat_members, chats


def _chat(m: Any) -> Chat:
    return Chat(
        id=m["id"],
        kind=ChatKind(m["kind"]),
        name=m["name"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        last_seq=m["last_seq"],
        direct_key=m["direct_key"],
        disappear_seconds=m["disappear_seconds"],
    )


def _member(m: Any) -> Member:
    return Member(
        chat_id=m["chat_id"],
        user_id=m["user_id"],
        role=Role(m["role"]),
        joined_at=m["joined_at"],
        read_seq=m["read_seq"],
    )


def _member_row(member: Member) -> dict[str, Any]:
    return {
        "chat_id": member.chat_id,
        "user_id": member.user_id,
        "role": member.role.value,
        "joined_at": member.joined_at,
        "read_seq": member.read_seq,
    }


# Built once: every device that connects reads who shares a chat with its user
# (for presence), and building the select cost more than running it on SQLite.
_ME, _OTHER = chat_members.alias("me"), chat_members.alias("other")
_SHARING_A_CHAT = ConnectRead.of_lists(
    lambda listed: (
        sa.select(_ME.c.user_id.label("owner"), _OTHER.c.user_id)
        .join(_OTHER, _OTHER.c.chat_id == _ME.c.chat_id)
        .where(among(_ME.c.user_id, listed("user_ids")), _OTHER.c.user_id != _ME.c.user_id)
        .distinct()
    )
)


class SqlChatRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, chat: Chat, members: Sequence[Member]) -> None:
        await self._conn.execute(
            chats.insert().values(
                id=chat.id,
                kind=chat.kind.value,
                name=chat.name,
                direct_key=chat.direct_key,
                created_by=chat.created_by,
                created_at=chat.created_at,
                last_seq=chat.last_seq,
            )
        )
        await self._conn.execute(chat_members.insert(), [_member_row(m) for m in members])

    async def add_direct(self, chat: Chat, members: Sequence[Member]) -> Chat:
        """Add a 1:1 chat, or return the one that another request created just now."""
        try:
            async with self._conn.begin_nested():
                await self.add(chat, members)
        except IntegrityError:
            assert chat.direct_key is not None
            existing = await self.get_direct(chat.direct_key)
            if existing is None:
                raise
            return existing
        return chat

    async def add_directs(self, pairs: Sequence[tuple[Chat, Sequence[Member]]]) -> dict[str, Chat]:
        """Add many 1:1 chats in a few statements; by key, each stored chat (ours, or the one
        another request made first: a key already taken is skipped, not an error)."""
        if not pairs:
            return {}
        insert = postgresql.insert if self._conn.dialect.name == "postgresql" else sqlite.insert
        rows = [
            {
                "id": chat.id,
                "kind": chat.kind.value,
                "name": chat.name,
                "direct_key": chat.direct_key,
                "created_by": chat.created_by,
                "created_at": chat.created_at,
                "last_seq": chat.last_seq,
            }
            for chat, _ in pairs
        ]
        await self._conn.execute(
            insert(chats).on_conflict_do_nothing(index_elements=["direct_key"]), rows
        )
        stored = await self.get_directs([chat.direct_key for chat, _ in pairs if chat.direct_key])
        mine = [
            _member_row(member)
            for chat, members in pairs
            if chat.direct_key and stored[chat.direct_key].id == chat.id
            for member in members
        ]
        if mine:
            await self._conn.execute(chat_members.insert(), mine)
        return stored

    async def get(self, chat_id: str) -> Chat | None:
        row = (await self._conn.execute(sa.select(chats).where(chats.c.id == chat_id))).first()
        return _chat(row._mapping) if row else None

    async def get_direct(self, key: str) -> Chat | None:
        query = sa.select(chats).where(chats.c.direct_key == key)
        row = (await self._conn.execute(query)).first()
        return _chat(row._mapping) if row else None

    async def get_directs(self, keys: Sequence[str]) -> dict[str, Chat]:
        if not keys:
            return {}
        query = sa.select(chats).where(chats.c.direct_key.in_(list(keys)))
        found = [_chat(row._mapping) for row in await self._conn.execute(query)]
        return {chat.direct_key: chat for chat in found if chat.direct_key is not None}

    async def rename(self, chat_id: str, name: str) -> None:
        await self._conn.execute(chats.update().where(chats.c.id == chat_id).values(name=name))

    async def set_disappearing(self, chat_id: str, seconds: int) -> None:
        await self._conn.execute(
            chats.update().where(chats.c.id == chat_id).values(disappear_seconds=seconds)
        )

    def _key(self, chat_id: str, user_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(chat_members.c.chat_id == chat_id, chat_members.c.user_id == user_id)

    async def member(self, chat_id: str, user_id: str) -> Member | None:
        query = sa.select(chat_members).where(self._key(chat_id, user_id))
        row = (await self._conn.execute(query)).first()
        return _member(row._mapping) if row else None

    async def members(self, chat_id: str) -> Sequence[Member]:
        query = (
            sa.select(chat_members)
            .where(chat_members.c.chat_id == chat_id)
            .order_by(chat_members.c.joined_at, chat_members.c.user_id)
        )
        return [_member(row._mapping) for row in await self._conn.execute(query)]

    async def count_members(self, chat_id: str) -> int:
        query = sa.select(sa.func.count()).where(chat_members.c.chat_id == chat_id)
        return int((await self._conn.execute(query)).scalar_one())

    async def add_member(self, member: Member) -> None:
        await self._conn.execute(chat_members.insert().values(**_member_row(member)))

    async def remove_member(self, chat_id: str, user_id: str) -> None:
        await self._conn.execute(chat_members.delete().where(self._key(chat_id, user_id)))

    async def set_role(self, chat_id: str, user_id: str, role: Role) -> None:
        await self._conn.execute(
            chat_members.update().where(self._key(chat_id, user_id)).values(role=role.value)
        )

    async def memberships(self, user_id: str) -> Sequence[tuple[Chat, Member]]:
        query = (
            sa.select(chats, chat_members)
            .join(chat_members, chat_members.c.chat_id == chats.c.id)
            .where(chat_members.c.user_id == user_id)
            .order_by(chats.c.id)
        )
        rows = await self._conn.execute(query)
        return [(_chat(row._mapping), _member(row._mapping)) for row in rows]

    async def raise_read_seq(self, chat_id: str, user_id: str, seq: int) -> int | None:
        # Locked (PostgreSQL): two devices of one user marking at once on two
        # commit workers must not both start from the same old mark.
        current = sa.select(chat_members.c.read_seq).where(self._key(chat_id, user_id))
        old = (await self._conn.execute(current.with_for_update())).scalar_one_or_none()
        if old is None or old >= seq:
            return None
        await self._conn.execute(
            chat_members.update().where(self._key(chat_id, user_id)).values(read_seq=seq)
        )
        return int(old)

    async def contacts(self, user_id: str) -> set[str]:
        return (await self.sharing_a_chat([user_id])).get(user_id, set())

    async def sharing_a_chat(self, user_ids: Sequence[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in await _SHARING_A_CHAT.rows(self._conn, user_ids=sorted(set(user_ids))):
            found.setdefault(row["owner"], set()).add(row["user_id"])
        return found
