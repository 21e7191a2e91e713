"""The SQL repositories and unit of work, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from pigeon.bootstrap import units_of_work
from pigeon.domain.chats import Chat, ChatKind, Member, Role, direct_key
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import Receipt, ReceiptType
from pigeon.domain.ids import new_id
from pigeon.domain.models import CodePurpose, Device, User, VerificationCode
from pigeon.domain.people import DEFAULT_PRIVACY, Audience, LastSeenAudience, Privacy
from pigeon.services.ports import CodeAttempt, StorageError, UnitOfWork
from pigeon.services.visibility import watchers
from pigeon.storage.engine import create_engine
from pigeon.storage.schema import inbox, users
from tests.support import eventually, make_device

REG = CodePurpose.REGISTRATION
T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
PHONE = "+14155550123"
OTHER_PHONE = "+14155550124"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def make_user(phone: str = PHONE, **fields: object) -> User:
    return User(id=new_id(), phone=phone, created_at=T0, **fields)  # type: ignore[arg-type]


def make_code(
    phone: str = PHONE, code_hash: str = "hash-1", expires_at: datetime = T0 + timedelta(minutes=10)
) -> VerificationCode:
    return VerificationCode(
        phone=phone,
        purpose=REG,
        code_hash=code_hash,
        created_at=expires_at - timedelta(minutes=10),
        expires_at=expires_at,
    )


async def device_by_access_hash(uow: UnitOfWork, token_hash: str) -> Device | None:
    return (await uow.devices.get_by_access_hashes([token_hash])).get(token_hash)


async def add_user(engine: AsyncEngine, user: User, *devices: Device) -> None:
    async with units_of_work(engine)() as uow:
        await uow.users.add(user)
        for device in devices:
            await uow.devices.add(device)
        await uow.commit()


async def put_code(engine: AsyncEngine, code: VerificationCode) -> None:
    async with units_of_work(engine)() as uow:
        await uow.codes.put(code)
        await uow.commit()


async def claim(engine: AsyncEngine, max_attempts: int, phone: str = PHONE) -> CodeAttempt | None:
    async with units_of_work(engine)() as uow:
        attempt = await uow.codes.claim_attempt(phone, REG, max_attempts)
        await uow.commit()
    return attempt


# -- users ---------------------------------------------------------------------


async def test_added_user_is_found_by_id_and_by_phone(engine: AsyncEngine) -> None:
    user = make_user(name="Ada", about="hi", country="GB", location="London")
    await add_user(engine, user)
    async with units_of_work(engine)() as uow:
        assert await uow.users.get(user.id) == user
        assert await uow.users.get_by_phone(PHONE) == user
        assert await uow.users.get(new_id()) is None
        assert await uow.users.get_by_phone(OTHER_PHONE) is None


async def test_new_user_gets_empty_profile_and_no_pin(engine: AsyncEngine) -> None:
    user = make_user()
    await add_user(engine, user)
    async with units_of_work(engine)() as uow:
        stored = await uow.users.get(user.id)
    assert stored is not None
    assert (stored.name, stored.about, stored.country, stored.location) == ("", "", None, None)
    assert not stored.has_pin


async def test_second_user_with_the_same_phone_is_refused(engine: AsyncEngine) -> None:
    first = make_user()
    await add_user(engine, first)
    # The unit of work turns the driver's error into the port's StorageError.
    with pytest.raises(StorageError, match="phone") as caught:
        await add_user(engine, make_user())
    assert isinstance(caught.value.__cause__, sa.exc.IntegrityError)
    async with units_of_work(engine)() as uow:
        assert await uow.users.get_by_phone(PHONE) == first
        assert [u.id for u in await uow.users.list(10)] == [first.id]


async def test_update_profile_changes_only_the_given_fields(engine: AsyncEngine) -> None:
    user = make_user(name="Ada", about="hi")
    other = make_user(OTHER_PHONE, name="Bob")
    await add_user(engine, user)
    await add_user(engine, other)
    async with units_of_work(engine)() as uow:
        await uow.users.update_profile(user.id, {"about": "busy", "country": "FR"})
        await uow.commit()
    async with units_of_work(engine)() as uow:
        stored = await uow.users.get(user.id)
        untouched = await uow.users.get(other.id)
    assert stored is not None
    assert (stored.name, stored.about, stored.country, stored.location) == (
        "Ada",
        "busy",
        "FR",
        None,
    )
    assert untouched == other


async def test_set_pin_and_clear_it(engine: AsyncEngine) -> None:
    user = make_user()
    await add_user(engine, user)
    async with units_of_work(engine)() as uow:
        await uow.users.set_pin(user.id, "argon2-hash")
        await uow.users.set_pin_reset_requested(user.id, T0)
        await uow.commit()
    async with units_of_work(engine)() as uow:
        stored = await uow.users.get(user.id)
        assert stored is not None
        assert stored.pin_hash == "argon2-hash"
        assert stored.has_pin
        assert stored.pin_reset_requested_at == T0
        await uow.users.set_pin(user.id, None)
        await uow.users.set_pin_reset_requested(user.id, None)
        await uow.commit()
    async with units_of_work(engine)() as uow:
        stored = await uow.users.get(user.id)
    assert stored is not None
    assert not stored.has_pin
    assert stored.pin_reset_requested_at is None


async def test_list_pages_through_all_users_in_id_order(engine: AsyncEngine) -> None:
    added = [make_user(f"+1415555{100 + i:04d}") for i in range(7)]
    async with units_of_work(engine)() as uow:
        for user in added:
            await uow.users.add(user)
        await uow.commit()

    pages: list[list[str]] = []
    after: str | None = None
    async with units_of_work(engine)() as uow:
        for _ in range(10):  # bounded: 7 users in pages of 3 need 3 pages (+1 empty)
            page = [u.id for u in await uow.users.list(3, after_id=after)]
            if not page:
                break
            pages.append(page)
            after = page[-1]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [user_id for page in pages for user_id in page] == sorted(u.id for u in added)


# -- devices -------------------------------------------------------------------


async def test_device_is_found_by_its_token_hashes(engine: AsyncEngine) -> None:
    user = make_user()
    device = make_device(user.id)
    await add_user(engine, user, device)
    async with units_of_work(engine)() as uow:
        assert await uow.devices.get(device.id) == device
        assert await device_by_access_hash(uow, device.access_token_hash) == device
        assert await uow.devices.get_by_refresh_hash(device.refresh_token_hash) == device
        # A refresh token is not an access token, and the other way round.
        assert await device_by_access_hash(uow, device.refresh_token_hash) is None
        assert await uow.devices.get_by_refresh_hash(device.access_token_hash) is None
        assert await device_by_access_hash(uow, "unknown") is None
        assert await uow.devices.get(new_id()) is None


async def test_devices_are_listed_and_counted_per_user(engine: AsyncEngine) -> None:
    ada, bob = make_user(), make_user(OTHER_PHONE)
    ada_devices = [make_device(ada.id, f"ada-{i}") for i in range(3)]
    bob_device = make_device(bob.id, "bob")
    # Inserted out of order: the listing is by id (creation order), not by insertion.
    await add_user(engine, ada, *reversed(ada_devices))
    await add_user(engine, bob, bob_device)
    async with units_of_work(engine)() as uow:
        listed = await uow.devices.list_for_user(ada.id)
        assert [d.id for d in listed] == sorted(d.id for d in ada_devices)
        assert await uow.devices.list_for_user(bob.id) == [bob_device]
        assert await uow.devices.list_for_user(new_id()) == []
        assert await uow.devices.count_for_user(ada.id) == 3
        assert await uow.devices.count_for_user(bob.id) == 1
        assert await uow.devices.count_for_user(new_id()) == 0
        assert await uow.devices.count() == 4


async def test_delete_device_is_true_once_then_false(engine: AsyncEngine) -> None:
    user = make_user()
    kept, removed = make_device(user.id, "kept"), make_device(user.id, "removed")
    await add_user(engine, user, kept, removed)
    async with units_of_work(engine)() as uow:
        assert await uow.devices.delete(removed.id) is True
        await uow.commit()
    async with units_of_work(engine)() as uow:
        assert await uow.devices.delete(removed.id) is False
        assert await device_by_access_hash(uow, removed.access_token_hash) is None
        assert await uow.devices.list_for_user(user.id) == [kept]


async def test_a_deleted_devices_queue_goes_with_it(engine: AsyncEngine) -> None:
    """Revoked or abandoned, a device leaves no queue entry behind: no foreign key
    cascades to them (migration 0014), so the delete itself drops them."""
    user = make_user()
    kept, revoked = make_device(user.id, "kept"), make_device(user.id, "revoked")
    abandoned = make_device(user.id, "abandoned", at=T0 - timedelta(days=91))
    await add_user(engine, user, kept, revoked, abandoned)
    receipt = Receipt(new_id(), ReceiptType.DELIVERED, user.id, 1, T0)
    async with units_of_work(engine)() as uow:
        devices = [kept.id, revoked.id, abandoned.id]
        ends = await uow.delivery.allocate_inbox_seqs({d: 2 for d in devices})
        await uow.delivery.insert_inbox(
            [InboxEntry(d, ends[d] - i, T0 + timedelta(days=1), event=receipt)
             for d in devices for i in (1, 0)]
        )  # fmt: skip
        await uow.commit()
    async with units_of_work(engine)() as uow:
        assert await uow.devices.delete(revoked.id) is True
        assert await uow.devices.delete_expired(T0) == [abandoned.id]
        await uow.commit()
    async with engine.connect() as conn:
        queued = sa.select(inbox.c.device_id, sa.func.count()).group_by(inbox.c.device_id)
        assert {d: n for d, n in (await conn.execute(queued)).all()} == {kept.id: 2}


async def test_replace_tokens_retires_the_old_hashes(engine: AsyncEngine) -> None:
    user = make_user()
    device = make_device(user.id)
    await add_user(engine, user, device)
    old_access, old_refresh = device.access_token_hash, device.refresh_token_hash
    later = T0 + timedelta(hours=5, microseconds=7)
    device.access_token_hash, device.refresh_token_hash = "a-new", "r-new"
    device.access_expires_at = later + timedelta(days=1)
    device.refresh_expires_at = later + timedelta(days=90)
    device.last_seen_at = later
    async with units_of_work(engine)() as uow:
        await uow.devices.replace_tokens(device)
        await uow.commit()
    async with units_of_work(engine)() as uow:
        assert await device_by_access_hash(uow, old_access) is None
        assert await uow.devices.get_by_refresh_hash(old_refresh) is None
        assert await device_by_access_hash(uow, "a-new") == device
        assert await uow.devices.get_by_refresh_hash("r-new") == device  # created_at and all


async def test_deleting_a_user_deletes_their_devices(engine: AsyncEngine) -> None:
    ada, bob = make_user(), make_user(OTHER_PHONE)
    ada_device, bob_device = make_device(ada.id), make_device(bob.id)
    await add_user(engine, ada, ada_device)
    await add_user(engine, bob, bob_device)
    async with engine.begin() as conn:
        await conn.execute(users.delete().where(users.c.id == ada.id))
    async with units_of_work(engine)() as uow:
        assert await uow.devices.get(ada_device.id) is None
        assert await device_by_access_hash(uow, ada_device.access_token_hash) is None
        assert await uow.devices.count() == 1
        assert await uow.devices.get(bob_device.id) == bob_device


async def test_device_of_unknown_user_is_refused(engine: AsyncEngine) -> None:
    async def add_orphan() -> None:
        async with units_of_work(engine)() as uow:
            await uow.devices.add(make_device(new_id()))
            await uow.commit()

    with pytest.raises(StorageError) as caught:
        await add_orphan()
    assert isinstance(caught.value.__cause__, sa.exc.IntegrityError)
    async with units_of_work(engine)() as uow:
        assert await uow.devices.count() == 0


# -- verification codes --------------------------------------------------------


async def test_put_replaces_the_previous_code_for_the_same_phone(engine: AsyncEngine) -> None:
    await put_code(engine, make_code(code_hash="old"))
    await put_code(engine, make_code(OTHER_PHONE, code_hash="other"))
    assert await claim(engine, 5) == CodeAttempt("old", T0 + timedelta(minutes=10), 1)
    later = T0 + timedelta(minutes=3)
    await put_code(engine, make_code(code_hash="new", expires_at=later))
    # The new code starts with no attempts used; the old one is gone.
    assert await claim(engine, 5) == CodeAttempt("new", later, 1)
    async with units_of_work(engine)() as uow:
        assert not await uow.codes.consume(PHONE, REG, "old")
    assert await claim(engine, 5, OTHER_PHONE) == CodeAttempt(
        "other", T0 + timedelta(minutes=10), 1
    )


async def test_claim_attempt_counts_and_stops_at_the_maximum(engine: AsyncEngine) -> None:
    assert await claim(engine, 3) is None  # no code at all
    await put_code(engine, make_code())
    attempts = [await claim(engine, 3) for _ in range(5)]
    assert [a.attempts if a else None for a in attempts] == [1, 2, 3, None, None]
    async with units_of_work(engine)() as uow:
        # Used-up codes are still there (so callers can tell "too many" from "none").
        assert await uow.codes.exists(PHONE, REG)
        assert not await uow.codes.exists(OTHER_PHONE, REG)


async def test_claimed_attempt_is_lost_without_commit(engine: AsyncEngine) -> None:
    await put_code(engine, make_code())
    async with units_of_work(engine)() as uow:
        attempt = await uow.codes.claim_attempt(PHONE, REG, 5)
        assert attempt is not None
        assert attempt.attempts == 1
    attempt = await claim(engine, 5)
    assert attempt is not None
    assert attempt.attempts == 1


async def test_consume_is_true_exactly_once(engine: AsyncEngine) -> None:
    await put_code(engine, make_code(code_hash="right"))
    async with units_of_work(engine)() as uow:
        assert await uow.codes.consume(PHONE, REG, "wrong") is False
        assert await uow.codes.consume(PHONE, REG, "right") is True
        assert await uow.codes.consume(PHONE, REG, "right") is False
        await uow.commit()
    async with units_of_work(engine)() as uow:
        assert await uow.codes.consume(PHONE, REG, "right") is False
        assert not await uow.codes.exists(PHONE, REG)


async def test_purge_expired_deletes_only_expired_codes(engine: AsyncEngine) -> None:
    now = T0 + timedelta(minutes=10)
    await put_code(engine, make_code("+14155550101", expires_at=now - timedelta(microseconds=1)))
    await put_code(engine, make_code("+14155550102", expires_at=now))  # expires at ``now``
    await put_code(engine, make_code("+14155550103", expires_at=now + timedelta(microseconds=1)))
    await put_code(engine, make_code("+14155550104", expires_at=now + timedelta(days=1)))
    async with units_of_work(engine)() as uow:
        # ``now`` in another zone is the same instant.
        assert await uow.codes.purge_expired(now.astimezone(timezone(timedelta(hours=-7)))) == 2
        await uow.commit()
    async with units_of_work(engine)() as uow:
        left = [
            p
            for p in ["+14155550101", "+14155550102", "+14155550103", "+14155550104"]
            if await uow.codes.exists(p, REG)
        ]
        assert left == ["+14155550103", "+14155550104"]
        assert await uow.codes.purge_expired(now) == 0


# -- timestamps ----------------------------------------------------------------


async def test_timestamps_come_back_as_the_same_instant_in_utc(engine: AsyncEngine) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    created = datetime(2026, 7, 4, 23, 59, 59, 999999, tzinfo=india)
    user = make_user(pin_reset_requested_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    user.created_at = created
    device = make_device(user.id, at=datetime(2030, 12, 31, 23, 59, 59, 1, tzinfo=india))
    code_expiry = datetime(2026, 2, 3, 4, 5, 6, 654321, tzinfo=timezone(timedelta(hours=-8)))
    await add_user(engine, user, device)
    await put_code(engine, make_code(expires_at=code_expiry))

    async with units_of_work(engine)() as uow:
        stored_user = await uow.users.get(user.id)
        stored_device = await uow.devices.get(device.id)
        attempt = await uow.codes.claim_attempt(PHONE, REG, 5)
    assert stored_user is not None
    assert stored_device is not None
    assert attempt is not None
    stamps = [
        (stored_user.created_at, created),
        (stored_user.pin_reset_requested_at, user.pin_reset_requested_at),
        (stored_device.created_at, device.created_at),
        (stored_device.last_seen_at, device.last_seen_at),
        (stored_device.access_expires_at, device.access_expires_at),
        (stored_device.refresh_expires_at, device.refresh_expires_at),
        (attempt.expires_at, code_expiry),
    ]
    for stored, original in stamps:
        assert stored is not None
        assert original is not None
        assert stored.tzinfo is not None
        assert stored.utcoffset() == timedelta(0)
        assert stored == original
        assert stored.microsecond == original.microsecond
    assert stored_user.created_at == datetime(2026, 7, 4, 18, 29, 59, 999999, tzinfo=UTC)


async def test_naive_timestamp_is_refused(engine: AsyncEngine) -> None:
    user = make_user()
    user.created_at = datetime(2026, 1, 1, 12, 0)  # naive: the point of the test
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        await add_user(engine, user)
    async with units_of_work(engine)() as uow:
        assert await uow.users.get_by_phone(PHONE) is None


# -- unit of work --------------------------------------------------------------


async def test_nothing_is_saved_without_commit(engine: AsyncEngine) -> None:
    user = make_user()
    async with units_of_work(engine)() as uow:
        await uow.users.add(user)
        await uow.codes.put(make_code())
        # Visible inside its own transaction...
        assert await uow.users.get(user.id) == user
    # ...and gone afterwards.
    async with units_of_work(engine)() as uow:
        assert await uow.users.get(user.id) is None
        assert not await uow.codes.exists(PHONE, REG)


async def test_an_error_rolls_back_the_whole_unit(engine: AsyncEngine) -> None:
    user = make_user()

    async def add_then_fail() -> None:
        async with units_of_work(engine)() as uow:
            await uow.users.add(user)
            await uow.devices.add(make_device(user.id))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await add_then_fail()
    async with units_of_work(engine)() as uow:
        assert await uow.users.get(user.id) is None
        assert await uow.devices.count() == 0


async def test_committed_work_is_visible_to_the_next_unit(engine: AsyncEngine) -> None:
    user = make_user()
    async with units_of_work(engine)() as uow:
        await uow.users.add(user)
        await uow.commit()
    async with units_of_work(engine)() as uow:
        assert await uow.users.get(user.id) == user


# -- concurrency ---------------------------------------------------------------


async def test_concurrent_guesses_never_exceed_the_maximum(engine: AsyncEngine) -> None:
    await put_code(engine, make_code())
    results = await asyncio.gather(*(claim(engine, 5) for _ in range(50)))
    claimed = [r for r in results if r is not None]
    assert len(claimed) == 5
    assert sorted(r.attempts for r in claimed) == [1, 2, 3, 4, 5]
    assert await claim(engine, 5) is None


async def test_concurrent_read_then_write_units_all_succeed(engine: AsyncEngine) -> None:
    """Each unit reads before it writes; none may fail with "database is locked"."""
    await put_code(engine, make_code())

    async def read_then_claim() -> int:
        async with units_of_work(engine)() as uow:
            assert await uow.codes.exists(PHONE, REG)
            await asyncio.sleep(0)  # let the others read too
            attempt = await uow.codes.claim_attempt(PHONE, REG, 1000)
            await uow.commit()
        assert attempt is not None
        return attempt.attempts

    counts = await asyncio.gather(*(read_then_claim() for _ in range(30)))
    assert sorted(counts) == list(range(1, 31))


async def test_add_directs_keeps_a_chat_another_request_made_first(engine: AsyncEngine) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    alice, bob, carol = (
        make_user("+14155550101"),
        make_user("+14155550102"),
        make_user("+14155550103"),
    )
    async with units_of_work(engine)() as uow:
        for person in (alice, bob, carol):
            await uow.users.add(person)
        await uow.commit()

    def pair(other: User) -> tuple[Chat, list[Member]]:
        key = direct_key(alice.id, other.id)
        chat = Chat(new_id(), ChatKind.DIRECT, "", alice.id, now, direct_key=key)
        return chat, [Member(chat.id, u, Role.MEMBER, now) for u in (alice.id, other.id)]

    first, _ = earlier = pair(bob)
    async with units_of_work(engine)() as uow:
        await uow.chats.add_directs([earlier])
        await uow.commit()
    late, fresh = pair(bob), pair(carol)
    async with units_of_work(engine)() as uow:
        stored = await uow.chats.add_directs([late, fresh])
        await uow.commit()
    assert stored[first.direct_key or ""].id == first.id  # the first one stays
    assert stored[fresh[0].direct_key or ""].id == fresh[0].id
    async with units_of_work(engine)() as uow:
        assert await uow.chats.get(late[0].id) is None
        assert {m.user_id for m in await uow.chats.members(first.id)} == {alice.id, bob.id}
        assert {m.user_id for m in await uow.chats.members(fresh[0].id)} == {alice.id, carol.id}


async def test_the_reads_of_a_connect_agree_in_read_only_and_writing_units(
    engine: AsyncEngine,
) -> None:
    """Every connect reads its token, its contacts and who may see it online. In a
    read-only unit on PostgreSQL these run on asyncpg itself (storage/asyncpg_reads.py):
    they must read what a unit of SQLAlchemy's reads, timestamps in UTC included."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    alice, bob, carol, dave = (make_user(f"+1415555020{i}") for i in range(4))
    device = make_device(alice.id)
    async with units_of_work(engine)() as uow:
        for person in (alice, bob, carol, dave):
            await uow.users.add(person)
        await uow.devices.add(device)
        for other in (bob, carol):
            chat = Chat(
                new_id(),
                ChatKind.DIRECT,
                "",
                alice.id,
                now,
                direct_key=direct_key(alice.id, other.id),
            )
            await uow.chats.add(
                chat, [Member(chat.id, u, Role.MEMBER, now) for u in (alice.id, other.id)]
            )
        await uow.people.block(alice.id, carol.id, now)
        await uow.people.add_contacts(alice.id, [bob.id], now)
        await uow.people.set_privacy(alice.id, Privacy(last_seen=Audience.CONTACTS), now)
        await uow.commit()

    async def connect_reads(read_only: bool) -> tuple[object, ...]:
        async with units_of_work(engine)(read_only=read_only) as uow:
            return (
                await device_by_access_hash(uow, device.access_token_hash),
                await device_by_access_hash(uow, "unknown"),
                await uow.chats.sharing_a_chat([alice.id, dave.id, bob.id]),
                await uow.people.last_seen_audiences(
                    [alice.id, dave.id], [alice.id, bob.id, carol.id, dave.id]
                ),
            )

    reads = await connect_reads(read_only=True)
    assert reads == await connect_reads(read_only=False)
    found, unknown, sharing, audiences = reads
    assert found == device
    assert unknown is None
    assert found.access_expires_at.tzinfo is not None
    # Dave shares no chat: he is left out.
    assert sharing == {alice.id: {bob.id, carol.id}, bob.id: {alice.id}}
    assert audiences == {
        alice.id: LastSeenAudience(Audience.CONTACTS, frozenset({carol.id}), frozenset({bob.id})),
        dave.id: LastSeenAudience(DEFAULT_PRIVACY.last_seen),
    }
    # Read together, each owner keeps their own settings: Alice shows her last seen to
    # her contacts and blocked Carol; Bob shows his to everyone.
    async with units_of_work(engine)(read_only=True) as uow:
        told = await watchers(uow, [alice.id, bob.id, dave.id])
    assert told == {alice.id: {bob.id}, bob.id: {alice.id}}


async def test_a_read_cancelled_while_its_overflow_connection_closes_logs_nothing(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only unit returning a connection the full pool does not take back closes
    it, a round trip; a socket closing then cancels the reading task. The close must
    still finish, not end in the pool's logged traceback (as it did in a fault test)."""
    engine = create_engine(postgres_url, pool_size=2)  # and 1 overflow connection
    uow = units_of_work(engine)
    try:
        release, holding = asyncio.Event(), []

        async def read() -> None:
            async with uow(read_only=True) as unit:
                await unit.devices.count()
                holding.append(unit)
                await release.wait()

        readers = [asyncio.ensure_future(read()) for _ in range(3)]
        await eventually(lambda: len(holding) == 3)
        assert engine.pool.checkedout() == 3  # type: ignore[attr-defined]
        release.set()
        # Called after the readers' steps in the loop's next turn: by then two gave
        # their connections back to the pool and the last is closing the overflow one.
        asyncio.get_running_loop().call_soon(lambda: [reader.cancel() for reader in readers])
        with caplog.at_level(logging.ERROR):
            await asyncio.gather(*readers, return_exceptions=True)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
