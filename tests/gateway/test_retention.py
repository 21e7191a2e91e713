"""What the server keeps: a message only until every device has it, a queue only for a while.

The tables are read directly (SQLAlchemy Core on ``container.engine``): what
is gone from them is gone from the server, which is the promise made to users.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.storage.schema import inbox, messages, sent_messages
from tests.gateway.conftest import Connect, Register
from tests.live import WsClient
from tests.support import FakeClock, bearer, before_message, online, snake_keys

EPHEMERAL = {"presence", "typing"}
TTL_DAYS = 30  # undelivered_ttl_days, the default
_numbers = itertools.count(7000)


# -- helpers -------------------------------------------------------------------


async def person(user: Register, devices: int = 1) -> list[dict[str, Any]]:
    phone = f"+1415555{next(_numbers):04d}"
    return [await user(phone, device=f"device-{index}") for index in range(devices)]


async def next_queued(client: WsClient, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.next_event(timeout=timeout)
            if frame["event"] not in EPHEMERAL:
                return frame


async def incoming(client: WsClient, count: int) -> list[dict[str, Any]]:
    """The data of the next ``count`` message events."""
    return [(await client.next_event("message", 10))["data"] for _ in range(count)]


async def queued_before(client: WsClient, marker: dict[str, Any]) -> list[dict[str, Any]]:
    """The queued events ``client`` got before the message ``marker`` (a send's answer),
    which was committed after what the test did before it (see tests.support)."""
    frames = await before_message(client, marker["messageId"])
    return [frame for frame in frames if frame["event"] not in EPHEMERAL]


async def send(client: WsClient, chat_id: str, cmid: str) -> Any:
    data = {"chatId": chat_id, "clientMessageId": cmid, "message": f"text {cmid}"}
    return await client.call("sendMessage", data)


async def direct_chat(client: WsClient, other: dict[str, Any]) -> str:
    answer = await client.call("createChat", {"participants": [other["user_id"]]})
    chat_id: str = answer["chatId"]
    return chat_id


async def ack(client: WsClient, up_to: int, chat_id: str) -> None:
    """Ack and wait until it is stored (a read mark queued behind it commits with or after it)."""
    assert await client.call("ack", {"upTo": up_to}) == {"upTo": up_to}
    assert await client.call("markRead", {"chatId": chat_id, "upToSeq": 0}) == {"upToSeq": 0}


async def message_ids(container: Container, chat_id: str) -> set[str]:
    async with container.engine.connect() as conn:
        query = sa.select(messages.c.id).where(messages.c.chat_id == chat_id)
        return set((await conn.execute(query)).scalars())


async def queued_messages(container: Container, device_id: str) -> list[str | None]:
    """The device's queue, oldest first: message ids (None for receipts)."""
    async with container.engine.connect() as conn:
        query = (
            sa.select(inbox.c.message_id)
            .where(inbox.c.device_id == device_id)
            .order_by(inbox.c.seq)
        )
        return list((await conn.execute(query)).scalars())


async def holders(container: Container, message_id: str) -> set[str]:
    async with container.engine.connect() as conn:
        query = sa.select(inbox.c.device_id).where(inbox.c.message_id == message_id)
        return set((await conn.execute(query)).scalars())


async def refreshed(client: httpx.AsyncClient, session: dict[str, Any]) -> dict[str, Any]:
    """New tokens for a device whose access token expired while the clock moved on."""
    response = await client.post(
        "/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert response.status_code == 200, response.text
    fresh = snake_keys(response.json())
    assert fresh["device_id"] == session["device_id"]
    return fresh


# -- deleted once delivered everywhere -------------------------------------------


async def test_message_is_deleted_once_every_recipient_device_acked(
    user: Register, connect: Connect, container: Container
) -> None:
    alice, bob = await person(user, 2), await person(user, 2)
    a1 = await online(connect, alice[0])
    a2 = await online(connect, alice[1], auto_ack=False)
    b1 = await online(connect, bob[0], auto_ack=False)
    b2 = await online(connect, bob[1], auto_ack=False)
    chat_id = await direct_chat(a1, bob[0])
    sent = await send(a1, chat_id, "m1")
    message_id = sent["messageId"]
    got = {name: (await incoming(c, 1))[0] for name, c in {"a2": a2, "b1": b1, "b2": b2}.items()}
    assert {m["messageId"] for m in got.values()} == {message_id}

    # Every other device of both users holds it; the sending device does not.
    assert await holders(container, message_id) == {
        alice[1]["device_id"],
        bob[0]["device_id"],
        bob[1]["device_id"],
    }
    await ack(b1, got["b1"]["inboxSeq"], chat_id)
    await ack(b2, got["b2"]["inboxSeq"], chat_id)
    assert await holders(container, message_id) == {alice[1]["device_id"]}
    assert await message_ids(container, chat_id) == {message_id}  # Alice's laptop lacks it

    await ack(a2, got["a2"]["inboxSeq"], chat_id)
    assert await holders(container, message_id) == set()
    assert await message_ids(container, chat_id) == set()


async def test_message_stays_while_an_offline_device_has_not_acked(
    user: Register, connect: Connect, container: Container
) -> None:
    alice, bob = await person(user), await person(user, 2)
    a = await online(connect, alice[0])
    b1 = await online(connect, bob[0], auto_ack=False)
    chat_id = await direct_chat(a, bob[0])
    sent = [await send(a, chat_id, f"m{i}") for i in range(3)]
    got = await incoming(b1, 3)
    await ack(b1, got[-1]["inboxSeq"], chat_id)
    ids = {s["messageId"] for s in sent}
    assert await message_ids(container, chat_id) == ids  # bob's tablet was never online
    assert await queued_messages(container, bob[1]["device_id"]) == [s["messageId"] for s in sent]

    b2 = await connect(bob[1], auto_ack=False)
    later = await incoming(b2, 3)
    assert [m["messageId"] for m in later] == [s["messageId"] for s in sent]
    await ack(b2, later[1]["inboxSeq"], chat_id)
    assert await message_ids(container, chat_id) == {sent[2]["messageId"]}
    await ack(b2, later[2]["inboxSeq"], chat_id)
    assert await message_ids(container, chat_id) == set()


# -- undelivered entries expire -------------------------------------------------------


async def test_undelivered_messages_expire_after_the_ttl(
    user: Register,
    connect: Connect,
    container: Container,
    clock: FakeClock,
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0])
    chat_id = await direct_chat(a, bob[0])
    sent = [await send(a, chat_id, f"m{i}") for i in range(3)]
    await a.close()
    queued = await queued_messages(container, bob[0]["device_id"])
    assert queued == [s["messageId"] for s in sent]

    clock.advance(days=TTL_DAYS, minutes=1)
    counts = await container.messaging.purge_expired()
    assert counts["queued"] == 3
    assert counts["messages"] == 3
    assert await queued_messages(container, bob[0]["device_id"]) == []
    assert await message_ids(container, chat_id) == set()

    # Bob's phone was off for a month: it gets nothing, just the end of its backlog.
    b = await connect(await refreshed(client, bob[0]), auto_ack=False)
    frame = await next_queued(b)
    assert frame["event"] == "drained"
    # And nothing after it: the first thing after "drained" is what Alice sends now.
    a = await online(connect, await refreshed(client, alice[0]))
    assert await queued_before(b, await send(a, chat_id, "marker")) == []


async def test_nothing_is_purged_before_the_ttl(
    user: Register,
    connect: Connect,
    container: Container,
    clock: FakeClock,
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0])
    chat_id = await direct_chat(a, bob[0])
    sent = [await send(a, chat_id, f"m{i}") for i in range(3)]
    await a.close()

    clock.advance(days=TTL_DAYS - 1)
    counts = await container.messaging.purge_expired()
    assert (counts["queued"], counts["messages"], counts["send_records"]) == (0, 0, 0)
    assert await message_ids(container, chat_id) == {s["messageId"] for s in sent}

    b = await connect(await refreshed(client, bob[0]), auto_ack=False)
    got = await incoming(b, 3)
    assert [m["messageId"] for m in got] == [s["messageId"] for s in sent]
    assert (await next_queued(b))["event"] == "drained"
    await ack(b, got[-1]["inboxSeq"], chat_id)
    assert await message_ids(container, chat_id) == set()


# -- retries after delivery ---------------------------------------------------------------


async def test_a_retry_after_delivery_gets_the_same_answer_while_the_send_record_lasts(
    user: Register,
    connect: Connect,
    container: Container,
    clock: FakeClock,
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0])
    b = await online(connect, bob[0], auto_ack=False)
    chat_id = await direct_chat(a, bob[0])
    first = await send(a, chat_id, "retry-me")
    got = await incoming(b, 1)
    await ack(b, got[0]["inboxSeq"], chat_id)
    assert await message_ids(container, chat_id) == set()  # delivered, so deleted

    # The answer was lost on the way to Alice's phone; it sends again.
    again = await send(a, chat_id, "retry-me")
    assert again["duplicate"] is True
    assert (again["messageId"], again["seq"]) == (first["messageId"], first["seq"])
    assert await message_ids(container, chat_id) == set()
    # Bob does not get it a second time: nothing comes before a marker sent after it.
    marker = await send(a, chat_id, "marker")
    assert await queued_before(b, marker) == []

    # Still the same answer on the last day of the TTL.
    await a.close()
    await b.close()
    clock.advance(days=TTL_DAYS - 1)
    await container.messaging.purge_expired()
    session = await refreshed(client, alice[0])
    a = await online(connect, session)
    late = await send(a, chat_id, "retry-me")
    assert late["duplicate"] is True
    assert late["messageId"] == first["messageId"]

    # Once the send record has expired too, the id is free again: a new message.
    await a.close()
    clock.advance(days=2)
    counts = await container.messaging.purge_expired()
    assert counts["send_records"] == 2  # "retry-me" and the marker
    a = await online(connect, await refreshed(client, session))
    reused = await send(a, chat_id, "retry-me")
    assert reused["duplicate"] is False
    assert reused["messageId"] != first["messageId"]
    assert reused["seq"] == marker["seq"] + 1
    async with container.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(sent_messages)
        assert (await conn.execute(query)).scalar_one() == 1


# -- revoked devices ----------------------------------------------------------------------


async def test_a_revoked_devices_queue_is_dropped_and_its_messages_purged(
    user: Register, connect: Connect, container: Container, client: httpx.AsyncClient
) -> None:
    alice, bob = await person(user), await person(user, 2)
    a = await online(connect, alice[0])
    b1 = await online(connect, bob[0], auto_ack=False)
    chat_id = await direct_chat(a, bob[0])
    m1 = await send(a, chat_id, "m1")
    got = await incoming(b1, 1)
    await ack(b1, got[0]["inboxSeq"], chat_id)
    m2 = await send(a, chat_id, "m2")  # b1 receives it but does not ack it
    assert (await incoming(b1, 1))[0]["messageId"] == m2["messageId"]
    tablet = bob[1]["device_id"]
    assert await queued_messages(container, tablet) == [m1["messageId"], m2["messageId"]]

    # Bob revokes his lost tablet from his phone.
    response = await client.delete(f"/v1/devices/{tablet}", headers=bearer(bob[0]))
    assert response.status_code == 204, response.text
    assert await queued_messages(container, tablet) == []
    # m1 was held only by the tablet's queue; m2 is still waiting for the phone's ack.
    assert await message_ids(container, chat_id) == {m1["messageId"], m2["messageId"]}
    counts = await container.messaging.purge_expired()
    assert counts["queued"] == 0
    assert counts["messages"] == 1
    assert await message_ids(container, chat_id) == {m2["messageId"]}

    # Nothing is queued for the revoked tablet any more, and the phone still gets m2.
    m3 = await send(a, chat_id, "m3")
    assert await queued_messages(container, tablet) == []
    await b1.close()
    b1 = await connect(bob[0], auto_ack=False)
    again = await incoming(b1, 2)
    assert [m["messageId"] for m in again] == [m2["messageId"], m3["messageId"]]
    await ack(b1, again[-1]["inboxSeq"], chat_id)
    assert await message_ids(container, chat_id) == set()
