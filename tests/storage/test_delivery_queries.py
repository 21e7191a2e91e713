"""The committer's delivery queries, on SQLite (both paths) and on PostgreSQL.

Acks of several devices for one message often land in the same batch; the
message must go exactly when the last entry that holds it goes, whichever
statement deletes the entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from pigeon.domain.chats import Chat, ChatKind, Member, Message, MessageKind, Role
from pigeon.domain.delivery import InboxEntry, SentRecord
from pigeon.domain.ids import new_id
from pigeon.domain.models import User
from pigeon.services.ports import UnitOfWork
from pigeon.storage.engine import create_committer_engine, create_engine
from pigeon.storage.schema import inbox, messages
from pigeon.storage.sqlite_batch import SqliteBatchWriter
from pigeon.storage.uow import SqlUnitOfWork
from tests.support import make_device

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
Units = Callable[[], UnitOfWork]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(params=["any", "committer"])
async def units(
    request: pytest.FixtureRequest, engine: AsyncEngine, database_url: str
) -> AsyncIterator[Units]:
    """Any unit of work, or the committer's as bootstrap makes it: SQLite's batch
    writer (its own connection and statements), PostgreSQL's own engine."""
    if request.param == "any":
        yield lambda: SqlUnitOfWork(engine)
    elif engine.dialect.name == "sqlite":
        writer = SqliteBatchWriter(f"sqlite+aiosqlite:///{Path(str(engine.url.database))}")
        yield writer
        writer.close()
    else:
        committer = create_committer_engine(database_url, pool_size=1)
        yield lambda: SqlUnitOfWork(committer)
        await committer.dispose()


async def people(engine: AsyncEngine, *devices_each: int) -> tuple[str, list[list[str]]]:
    """Users with that many devices each, all in one group chat; the chat and device ids."""
    chat_id, ids = new_id(), []
    async with SqlUnitOfWork(engine) as uow:
        members = []
        for n, count in enumerate(devices_each):
            user = User(id=new_id(), phone=f"+1415555{n:04d}", created_at=T0)
            await uow.users.add(user)
            devices = [make_device(user.id, at=T0) for _ in range(count)]
            for d in devices:
                await uow.devices.add(d)
            ids.append([d.id for d in devices])
            members.append(Member(chat_id, user.id, Role.MEMBER, T0))
        chat = Chat(chat_id, ChatKind.GROUP, "g", members[0].user_id, T0)
        await uow.chats.add(chat, members)
        await uow.commit()
    return chat_id, ids


async def send(units: Units, chat_id: str, sender: str, to: list[str], n: int) -> list[str]:
    """``n`` messages from the user owning device ``sender``, queued for devices ``to``."""
    async with units() as uow:
        user_id = await _owner(uow, sender)
        first = (await uow.delivery.allocate_chat_seqs({chat_id: n}))[chat_id] - n + 1
        text = MessageKind.TEXT
        batch = [
            Message(new_id(), chat_id, first + i, text, user_id, sender, "hi", T0) for i in range(n)
        ]
        ends = await uow.delivery.allocate_inbox_seqs({d: n for d in to})
        entries = [
            InboxEntry(d, ends[d] - n + 1 + i, T0 + timedelta(days=1), message=m)
            for d in to
            for i, m in enumerate(batch)
        ]
        sent = [SentRecord(sender, new_id(), m.id, chat_id, m.seq, T0) for m in batch]
        await uow.delivery.insert_batch(batch, sent, entries)
        await uow.commit()
    return [m.id for m in batch]


async def _owner(uow: UnitOfWork, device_id: str) -> str:
    found = await uow.devices.get(device_id)
    assert found is not None
    return found.user_id


async def kept(engine: AsyncEngine) -> tuple[set[str], int]:
    """Ids of the messages still stored, and the number of queue entries."""
    async with engine.connect() as conn:
        ids = set((await conn.execute(sa.select(messages.c.id))).scalars())
        entries = (await conn.execute(sa.select(sa.func.count()).select_from(inbox))).scalar_one()
    return ids, entries


async def ack(units: Units, acks: dict[str, int]) -> list[tuple[str, str]]:
    async with units() as uow:
        outcome = await uow.delivery.remove_acked(acks)
        await uow.commit()
    return sorted((e.device_id, e.message_id) for e in outcome.removed)


async def test_a_message_goes_when_its_last_device_acks_in_the_same_batch(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [b1, b2, b3]] = await people(engine, 1, 3)
    first, second = await send(units, chat_id, alice, [b1, b2, b3], 2)

    # Two of three devices ack both messages in one batch: both messages stay.
    removed = await ack(units, {b1: 2, b2: 2})
    assert removed == sorted((d, m) for d in (b1, b2) for m in (first, second))
    assert await kept(engine) == ({first, second}, 2)

    # The third acks the first only: that one goes, the second stays for it.
    assert await ack(units, {b3: 1}) == [(b3, first)]
    assert await kept(engine) == ({second}, 1)


async def test_acks_of_every_device_in_one_batch_delete_the_message_and_name_senders_devices(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[a1, a2], [b1, b2]] = await people(engine, 2, 2)
    [message] = await send(units, chat_id, a1, [a2, b1, b2], 1)
    async with units() as uow:
        outcome = await uow.delivery.remove_acked({a2: 1, b1: 1, b2: 1})
        await uow.commit()
    assert sorted(e.device_id for e in outcome.removed) == sorted([a2, b1, b2])
    assert {e.message_id for e in outcome.removed} == {message}
    [sender] = {e.sender_id for e in outcome.removed}
    assert sorted(outcome.sender_devices[sender]) == sorted([a1, a2])
    assert await kept(engine) == (set(), 0)


async def test_an_ack_past_the_queue_end_removes_only_what_is_there(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [bob]] = await people(engine, 1, 1)
    ids = await send(units, chat_id, alice, [bob], 3)
    assert await ack(units, {bob: 99}) == sorted((bob, m) for m in ids)
    assert await ack(units, {bob: 99}) == []
    assert await kept(engine) == (set(), 0)
