"""What every implementation of the delivery port must do (``services.ports.DeliveryRepository``).

Four implementations run these tests: SQLite through any unit of work
(SQLAlchemy's connection) and through the committer's batch writer (the
sqlite3 connection), PostgreSQL through the pool and through the committer's
own engine (asyncpg under SQLAlchemy's transaction). What one writes, the
others must read back alike: reads also go through the plain unit of work.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from pigeon.bootstrap import units_of_work
from pigeon.domain.chats import Chat, ChatKind, Member, Message, MessageKind, Role
from pigeon.domain.delivery import BatchFacts, InboxEntry, SentRecord
from pigeon.domain.events import Receipt, ReceiptType
from pigeon.domain.ids import new_id
from pigeon.domain.models import User
from pigeon.services.ports import UnitOfWork
from pigeon.storage.engine import create_committer_engine, create_engine
from pigeon.storage.schema import inbox, messages, sent_messages
from pigeon.storage.sqlite_writer import SqliteWriter
from tests.support import make_device

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
EXPIRES = T0 + timedelta(days=30)
Units = Callable[[], UnitOfWork]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(params=["any unit of work", "the committer's"])
async def units(
    request: pytest.FixtureRequest, engine: AsyncEngine, database_url: str
) -> AsyncIterator[Units]:
    """The implementation under test, on the connection bootstrap gives it."""
    if request.param == "any unit of work":
        yield units_of_work(engine)
    elif engine.dialect.name == "sqlite":
        writer = SqliteWriter(f"sqlite+aiosqlite:///{Path(str(engine.url.database))}")
        yield writer
        writer.close()
    else:
        committer = create_committer_engine(database_url, pool_size=1)
        yield units_of_work(committer)
        await committer.dispose()


async def people(engine: AsyncEngine, *devices_each: int) -> tuple[str, list[list[str]]]:
    """Users with that many devices each, all in one group chat; the chat and device ids."""
    chat_id, ids = new_id(), []
    async with units_of_work(engine)() as uow:
        members = []
        for count in devices_each:
            user = User(id=new_id(), phone=f"+1415{secrets.randbelow(10**7):07d}", created_at=T0)
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


async def owner(engine: AsyncEngine, device_id: str) -> str:
    async with units_of_work(engine)(read_only=True) as uow:
        found = await uow.devices.get(device_id)
    assert found is not None
    return found.user_id


def text(chat_id: str, seq: int, sender: str, device: str, body: str = "hi") -> Message:
    return Message(new_id(), chat_id, seq, MessageKind.TEXT, sender, device, body, T0)


async def send(
    units: Units, engine: AsyncEngine, chat_id: str, sender: str, to: list[str], n: int
) -> list[Message]:
    """``n`` messages from the user owning device ``sender``, queued for devices ``to``."""
    user_id = await owner(engine, sender)
    async with units() as uow:
        first = (await uow.delivery.allocate_chat_seqs({chat_id: n}))[chat_id] - n + 1
        batch = [text(chat_id, first + i, user_id, sender, f"hi {i}") for i in range(n)]
        ends = await uow.delivery.allocate_inbox_seqs({d: n for d in to})
        entries = [
            InboxEntry(d, ends[d] - n + 1 + i, EXPIRES, message=m)
            for d in to
            for i, m in enumerate(batch)
        ]
        sent = [SentRecord(sender, f"c{m.seq}", m.id, chat_id, m.seq, T0, user_id) for m in batch]
        await uow.delivery.insert_batch(batch, sent, entries)
        await uow.commit()
    return batch


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


async def pending_everywhere(
    units: Units, engine: AsyncEngine, device_id: str, after: int = 0, limit: int = 100
) -> list[InboxEntry]:
    """The device's queue read through the implementation and through the plain unit of
    work: both must agree."""
    async with units() as uow:
        here = await uow.delivery.pending(device_id, after, limit)
    async with units_of_work(engine)(read_only=True) as uow:
        there = await uow.delivery.pending(device_id, after, limit)
    assert here == there
    return here


# -- writing and reading back ----------------------------------------------------------


async def test_queued_messages_and_receipts_come_back_exactly_in_queue_order(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [bob]] = await people(engine, 1, 1)
    alice_id = await owner(engine, alice)
    india = timezone(timedelta(hours=5, minutes=30))
    rich = Message(
        new_id(),
        chat_id,
        1,
        MessageKind.TEXT,
        alice_id,
        alice,
        "héllo \U0001f426 \u202e",
        datetime(2026, 7, 4, 23, 59, 59, 999999, tzinfo=india),
        attachments=[{"attachmentId": "a1", "mimeType": "image/png", "size": 3, "fileName": "x"}],
        reply_to="01JREPLIED",
    )
    system = Message(
        new_id(), chat_id, 2, MessageKind.SYSTEM, None, None, "", T0,
        system={"action": "renamed", "actorId": alice_id, "name": "g2"},
    )  # fmt: skip
    receipt = Receipt(chat_id, ReceiptType.READ, alice_id, 2, T0 + timedelta(seconds=1))
    async with units() as uow:
        await uow.delivery.insert_messages([rich, system])
        ends = await uow.delivery.allocate_inbox_seqs({bob: 3})
        assert ends == {bob: 3}
        await uow.delivery.insert_inbox(
            [
                InboxEntry(bob, 1, EXPIRES, message=rich),
                InboxEntry(bob, 2, EXPIRES, message=system),
                InboxEntry(bob, 3, EXPIRES, event=receipt),
            ]
        )
        await uow.commit()

    entries = await pending_everywhere(units, engine, bob)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].message == rich
    assert entries[0].message.created_at.utcoffset() == timedelta(0)
    assert entries[1].message == system
    assert entries[2].event == receipt
    assert entries[2].message is None
    assert all(e.expires_at == EXPIRES for e in entries)
    assert [e.seq for e in await pending_everywhere(units, engine, bob, after=1, limit=1)] == [2]


async def test_receipts_stored_by_earlier_versions_still_read(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [bob]] = await people(engine, 1, 1)
    legacy = {
        "event": "receipt",
        "data": {
            "chatId": chat_id,
            "type": "delivered",
            "userId": alice,
            "upToSeq": 4,
            "at": "2026-03-01T09:30:15.123Z",
        },
    }
    async with engine.begin() as conn:
        await conn.execute(inbox.insert().values(device_id=bob, seq=1, event=legacy, expires_at=T0))
    [entry] = await pending_everywhere(units, engine, bob)
    assert entry.event == Receipt(
        chat_id, ReceiptType.DELIVERED, alice, 4, datetime(2026, 3, 1, 9, 30, 15, 123000, UTC)
    )


async def test_send_records_are_found_by_device_chat_and_client_id(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [bob]] = await people(engine, 1, 1)
    first, second = await send(units, engine, chat_id, alice, [bob], 2)
    async with units() as uow:
        found = await uow.delivery.find_sent(
            [(alice, chat_id, "c1"), (alice, chat_id, "c2"), (alice, chat_id, "nope"),
             (bob, chat_id, "c1"), (alice, new_id(), "c1")]
        )  # fmt: skip
    assert found == {
        (alice, chat_id, "c1"): SentRecord(alice, "c1", first.id, chat_id, 1, T0),
        (alice, chat_id, "c2"): SentRecord(alice, "c2", second.id, chat_id, 2, T0),
    }  # without the sender: nothing asks it of a send record found again
    async with units() as uow:
        assert await uow.delivery.find_sent([]) == {}


async def test_senders_between_seqs_come_from_the_send_records(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [bob], [carol]] = await people(engine, 1, 1, 1)
    await send(units, engine, chat_id, alice, [bob, carol], 2)  # seqs 1-2
    await send(units, engine, chat_id, bob, [alice, carol], 1)  # seq 3
    async with engine.begin() as conn:  # a record from before migration 0007: no sender
        await conn.execute(
            sa.insert(sent_messages).values(
                sender_device_id=carol, chat_id=chat_id, client_message_id="old",
                message_id=new_id(), seq=4, created_at=T0,
            )
        )  # fmt: skip
    a, b, c = [await owner(engine, d) for d in (alice, bob, carol)]
    async with units() as uow:
        assert await uow.delivery.senders_between(chat_id, 0, 4) == {a, b, c}
        assert await uow.delivery.senders_between(chat_id, 1, 2) == {a}
        assert await uow.delivery.senders_between(chat_id, 2, 3) == {b}
        assert await uow.delivery.senders_between(chat_id, 3, 9) == {c}
        assert await uow.delivery.senders_between(chat_id, 4, 9) == set()
        assert await uow.delivery.senders_between(new_id(), 0, 9) == set()


async def test_member_devices_name_every_member_even_without_devices(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[a1, a2], [b1], []] = await people(engine, 2, 1, 0)
    other_chat, [[c1]] = await people(engine, 1)
    a, b = await owner(engine, a1), await owner(engine, b1)
    async with units_of_work(engine)(read_only=True) as uow:
        [deviceless] = {m.user_id for m in await uow.chats.members(chat_id)} - {a, b}
    async with units() as uow:
        found = await uow.delivery.member_devices([chat_id, other_chat, new_id()])
        assert await uow.delivery.member_devices([]) == {}
        by_user = await uow.delivery.devices_of([a, deviceless, new_id()])
    assert found == {
        chat_id: {a: sorted([a1, a2]), b: [b1], deviceless: []},
        other_chat: {await owner(engine, c1): [c1]},
    }
    assert by_user == {a: sorted([a1, a2])}


async def test_seqs_are_allocated_in_blocks_and_never_reused(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice, _laptop], [bob]] = await people(engine, 2, 1)
    async with units() as uow:
        assert await uow.delivery.allocate_chat_seqs({chat_id: 3}) == {chat_id: 3}
        assert await uow.delivery.allocate_inbox_seqs({bob: 2, alice: 1}) == {bob: 2, alice: 1}
        await uow.commit()
    async with units() as uow:
        assert await uow.delivery.allocate_chat_seqs({chat_id: 1}) == {chat_id: 4}
        # A device removed meanwhile has no counter: it is left out, not an error.
        assert await uow.delivery.allocate_inbox_seqs({bob: 5, new_id(): 1}) == {bob: 7}
        assert await uow.delivery.allocate_chat_seqs({}) == {}
    # Not committed: the next allocation starts where the last commit left off.
    async with units() as uow:
        assert await uow.delivery.allocate_chat_seqs({chat_id: 1}) == {chat_id: 4}
        # Both at once, as a batch allocates them.
        both = await uow.delivery.allocate_seqs({chat_id: 2}, {bob: 1, alice: 2, new_id(): 1})
        assert both == ({chat_id: 6}, {bob: 3, alice: 3})
        assert await uow.delivery.allocate_seqs({}, {bob: 1}) == ({}, {bob: 4})
        assert await uow.delivery.allocate_seqs({chat_id: 1}, {}) == ({chat_id: 7}, {})


# -- acks ------------------------------------------------------------------------------


async def test_a_message_goes_when_its_last_device_acks_in_the_same_batch(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [b1, b2, b3]] = await people(engine, 1, 3)
    first, second = [m.id for m in await send(units, engine, chat_id, alice, [b1, b2, b3], 2)]

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
    [message] = await send(units, engine, chat_id, a1, [a2, b1, b2], 1)
    async with units() as uow:
        outcome = await uow.delivery.remove_acked({a2: 1, b1: 1, b2: 1})
        await uow.commit()
    assert sorted(e.device_id for e in outcome.removed) == sorted([a2, b1, b2])
    assert {(e.message_id, e.chat_id, e.seq) for e in outcome.removed} == {(message.id, chat_id, 1)}
    assert {e.sender_id for e in outcome.removed} == {message.sender_id}
    assert outcome.sender_devices == {message.sender_id: sorted([a1, a2])}
    assert await kept(engine) == (set(), 0)


async def test_an_ack_past_the_queue_end_removes_only_what_is_there(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [bob]] = await people(engine, 1, 1)
    ids = [m.id for m in await send(units, engine, chat_id, alice, [bob], 3)]
    assert await ack(units, {bob: 99}) == sorted((bob, m) for m in ids)
    assert await ack(units, {bob: 99}) == []
    assert await ack(units, {}) == []
    assert await kept(engine) == (set(), 0)


async def test_acked_receipts_leave_no_message_behind(engine: AsyncEngine, units: Units) -> None:
    chat_id, [[alice], [bob]] = await people(engine, 1, 1)
    receipt = Receipt(chat_id, ReceiptType.DELIVERED, bob, 1, T0)
    async with units() as uow:
        await uow.delivery.insert_inbox([InboxEntry(alice, 1, EXPIRES, event=receipt)])
        await uow.commit()
    assert await ack(units, {alice: 1}) == []  # a receipt is no message: nothing to report
    assert await kept(engine) == (set(), 0)


# -- purging -----------------------------------------------------------------------------


async def test_purge_drops_expired_entries_unheld_messages_and_old_send_records(
    engine: AsyncEngine, units: Units
) -> None:
    chat_id, [[alice], [bob]] = await people(engine, 1, 1)
    _old, fresh = await send(units, engine, chat_id, alice, [bob], 2)
    async with engine.begin() as conn:  # the first entry expired
        await conn.execute(
            inbox.update().where(inbox.c.seq == 1).values(expires_at=T0 - timedelta(seconds=1))
        )
    async with units() as uow:
        counts = await uow.delivery.purge_expired(T0, sent_before=T0 + timedelta(microseconds=1))
        await uow.commit()
    assert counts == {"queued": 1, "messages": 1, "send_records": 2}
    assert await kept(engine) == ({fresh.id}, 1)
    async with units() as uow:
        assert await uow.delivery.find_sent([(alice, chat_id, "c2")]) == {}


async def test_disappearing_names_only_chats_with_a_timer(
    engine: AsyncEngine, units: Units
) -> None:
    timed, _ = await people(engine, 1, 1)
    plain, _ = await people(engine, 1, 1)
    async with units_of_work(engine)() as uow:
        await uow.chats.set_disappearing(timed, 86400)
        await uow.commit()
    async with units() as uow:
        assert await uow.delivery.disappearing([timed, plain]) == {timed: 86400}
        assert await uow.delivery.disappearing([plain]) == {}
        assert await uow.delivery.disappearing([]) == {}


async def test_direct_blocks_find_blocks_in_one_to_one_chats_only(
    engine: AsyncEngine, units: Units
) -> None:
    group, [[a1], [b1]] = await people(engine, 1, 1)
    a, b = await owner(engine, a1), await owner(engine, b1)
    direct = new_id()
    async with units_of_work(engine)() as uow:
        chat = Chat(direct, ChatKind.DIRECT, "", a, T0, direct_key=f"{min(a, b)}:{max(a, b)}")
        await uow.chats.add(chat, [Member(direct, u, Role.MEMBER, T0) for u in (a, b)])
        await uow.people.block(b, a, T0)  # b blocked a
        await uow.commit()
    async with units() as uow:
        assert await uow.delivery.direct_blocks([direct, group], [a, b]) == {(direct, b, a)}
        assert await uow.delivery.direct_blocks([group], [a]) == set()  # groups flow
        assert await uow.delivery.direct_blocks([direct], [b]) == set()  # a blocked nobody
        assert await uow.delivery.direct_blocks([], [a]) == set()


async def test_batch_facts_read_at_once_what_the_single_reads_find(
    engine: AsyncEngine, units: Units
) -> None:
    group, [[a1, a2], [b1], []] = await people(engine, 2, 1, 0)
    a, b = await owner(engine, a1), await owner(engine, b1)
    direct = new_id()
    async with units_of_work(engine)() as uow:
        chat = Chat(direct, ChatKind.DIRECT, "", a, T0, direct_key=f"{min(a, b)}:{max(a, b)}")
        await uow.chats.add(chat, [Member(direct, u, Role.MEMBER, T0) for u in (a, b)])
        await uow.chats.set_disappearing(direct, 3600)
        await uow.people.block(b, a, T0)
        await uow.commit()
    [first] = await send(units, engine, group, a1, [a2, b1], 1)
    chats, senders = [direct, group, new_id()], [a, b]
    keys = [(a1, group, "c1"), (a1, direct, "c1"), (b1, group, "new")]
    async with units() as uow:
        facts = await uow.delivery.batch_facts(chats, keys, senders)
        assert facts.members == await uow.delivery.member_devices(chats)
        assert facts.earlier_sends == await uow.delivery.find_sent(keys)
        assert facts.blocks == await uow.delivery.direct_blocks(chats, senders)
        assert facts.timers == await uow.delivery.disappearing(chats)
        nothing_sent = await uow.delivery.batch_facts([group], [], [])
        nothing_asked = await uow.delivery.batch_facts([], [], [])
    # What the single reads found, so the comparison above compares something.
    assert facts.earlier_sends == {(a1, group, "c1"): SentRecord(a1, "c1", first.id, group, 1, T0)}
    assert facts.blocks == {(direct, b, a)}
    assert facts.timers == {direct: 3600}
    assert set(facts.members) == {direct, group}
    assert facts.members[group][a] == sorted([a1, a2])
    assert nothing_sent == BatchFacts({group: facts.members[group]}, {}, set(), {})
    assert nothing_asked == BatchFacts({}, {}, set(), {})
