"""Delivery guarantees over real sockets: every device, in order, once, at its own pace.

A user notices a message that never arrives, arrives twice, arrives out of
order, or arrives only after someone else's slow phone lets it through; each
test here fails on one of those.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import pytest
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.config import Settings
from pigeon.storage.schema import messages
from tests.gateway.conftest import Connect, Register
from tests.live import LiveServer, WsClient
from tests.support import before_message, burst, online

EPHEMERAL = {"presence", "typing"}
_numbers = itertools.count(8000)


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings, with this test's overrides (indirect parametrization) on top."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    return settings.model_copy(update=overrides)


# -- helpers -------------------------------------------------------------------


async def person(user: Register, devices: int = 1) -> list[dict[str, Any]]:
    """A new user with ``devices`` registered devices (sessions), none connected yet."""
    phone = f"+1415555{next(_numbers):04d}"
    return [await user(phone, device=f"device-{index}") for index in range(devices)]


async def next_queued(client: WsClient, timeout: float = 10) -> dict[str, Any]:
    """The next event that is not ephemeral."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.next_event(timeout=timeout)
            if frame["event"] not in EPHEMERAL:
                return frame


async def queued_until(client: WsClient, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """Queued frames (messages, receipts) until ``count`` message events have arrived."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while sum(frame.get("event") == "message" for frame in frames) < count:
            frames.append(await next_queued(client, timeout))
    return frames


async def incoming(client: WsClient, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The data of the next ``count`` message events; their inboxSeqs must increase."""
    frames = await queued_until(client, count, timeout)
    assert_inbox_order(frames)
    return [frame["data"] for frame in frames if frame.get("event") == "message"]


def assert_inbox_order(frames: list[dict[str, Any]]) -> None:
    seqs = [frame["data"]["inboxSeq"] for frame in frames if "event" in frame]
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs


async def queued_before(client: WsClient, marker: dict[str, Any]) -> list[dict[str, Any]]:
    """The queued events ``client`` got before the message ``marker`` (a send's answer).

    A barrier (see tests.support): the marker was committed after what the test
    did before it, and each device gets its queue in order.
    """
    frames = await before_message(client, marker["messageId"])
    assert client.answers.empty(), client.unread()  # no refused ack, say
    return [frame for frame in frames if frame["event"] not in EPHEMERAL]


async def assert_sent_up_to(client: WsClient, last: int) -> None:
    """The server has sent this connection no queued event after inboxSeq ``last``.

    Asked of the server itself: an ack of ``last + 1`` is refused with
    ``invalid_ack`` when that event was not sent on this connection. And no
    message beyond it arrived.
    """
    answer = await client.request("ack", {"upTo": last + 1})
    assert answer["ok"] is False, answer
    assert answer["error"]["code"] == "invalid_ack", answer
    assert [f for f in client.queued() if f["event"] == "message"] == []


async def ack(client: WsClient, up_to: int, chat_id: str) -> None:
    """Ack up to ``up_to`` and wait until the ack is stored.

    An ack is answered at once and stored with the next batch; a read mark of 0
    queued behind it is answered only once that batch (or a later one) committed.
    """
    assert await client.call("ack", {"upTo": up_to}) == {"upTo": up_to}
    assert await client.call("markRead", {"chatId": chat_id, "upToSeq": 0}) == {"upToSeq": 0}


async def send(client: WsClient, chat_id: str, cmid: str, text: str | None = None) -> Any:
    data = {"chatId": chat_id, "clientMessageId": cmid, "message": text or f"text {cmid}"}
    return await client.call("sendMessage", data)


async def direct_chat(client: WsClient, other: dict[str, Any]) -> str:
    chat_id: str = (await client.call("createChat", {"participants": [other["user_id"]]}))["chatId"]
    return chat_id


# -- fan-out to every device ------------------------------------------------------


async def test_each_message_reaches_every_other_device_in_seq_order(
    user: Register, connect: Connect
) -> None:
    alice, bob = await person(user, 3), await person(user, 2)
    clients = {s["device_id"]: await online(connect, s) for s in alice + bob}
    a1, a2, a3 = (clients[s["device_id"]] for s in alice)
    b1, b2 = (clients[s["device_id"]] for s in bob)
    chat_id = await direct_chat(a1, bob[0])
    senders = {"a1": a1, "b1": b1, "a2": a2, "b2": b2}
    names = ["a1", "a2", "a3", "b1", "b2"]
    devices = dict(zip(names, (s["device_id"] for s in alice + bob), strict=True))

    async def five_from(name: str, client: WsClient) -> list[tuple[str, Any]]:
        return [(name, await send(client, chat_id, f"{name}-{i}")) for i in range(5)]

    sent = [
        item
        for part in await asyncio.gather(*(five_from(n, c) for n, c in senders.items()))
        for item in part
    ]
    by_sender = {name: {answer["messageId"] for n, answer in sent if n == name} for name in senders}
    all_ids = {answer["messageId"] for _, answer in sent}
    assert len(all_ids) == 20
    assert sorted(answer["seq"] for _, answer in sent) == list(range(1, 21))

    # Everything before a marker, so nothing comes twice: one from a3 for the
    # senders, then one from b2 for a3 (a device does not get its own).
    markers = dict.fromkeys(senders, await send(a3, chat_id, "marker-for-senders"))
    markers["a3"] = await send(b2, chat_id, "marker-for-a3")
    for name, client in {**senders, "a3": a3}.items():
        expected = all_ids - by_sender.get(name, set())
        frames = await queued_before(client, markers[name])
        assert_inbox_order(frames)
        got = [f["data"] for f in frames if f["event"] == "message"]
        assert len(got) == len(expected), name
        assert {m["messageId"] for m in got} == expected, name
        seqs = [m["seq"] for m in got]
        assert all(a < b for a, b in itertools.pairwise(seqs)), (name, seqs)
        assert all(m["chatId"] == chat_id for m in got)
        assert all(m["senderDeviceId"] != devices[name] for m in got), name


async def test_offline_devices_catch_up_in_order_then_drained_once(
    user: Register, connect: Connect
) -> None:
    alice, bob = await person(user), await person(user, 2)
    a = await online(connect, alice[0])
    b1 = await online(connect, bob[0], auto_ack=False)
    chat_id = await direct_chat(a, bob[0])

    first = [await send(a, chat_id, f"m{i}") for i in range(5)]
    got = await incoming(b1, 5)
    assert [m["messageId"] for m in got] == [s["messageId"] for s in first]
    await ack(b1, got[-1]["inboxSeq"], chat_id)
    await b1.close()

    second = [await send(a, chat_id, f"m{i}") for i in range(5, 10)]

    async def catch_up(session: dict[str, Any], expected: list[Any]) -> WsClient:
        client = await connect(session)
        frames = [await next_queued(client) for _ in range(len(expected) + 1)]
        assert [f["event"] for f in frames] == ["message"] * len(expected) + ["drained"]
        assert [f["data"]["messageId"] for f in frames[:-1]] == [s["messageId"] for s in expected]
        assert [f["data"]["seq"] for f in frames[:-1]] == [s["seq"] for s in expected]
        assert_inbox_order(frames[:-1])
        assert frames[-1]["data"]["inboxSeq"] == frames[-2]["data"]["inboxSeq"]
        return client

    b1 = await catch_up(bob[0], second)  # disconnected: only what it had not acked
    b2 = await catch_up(bob[1], first + second)  # never connected: everything

    # Live messages follow, and the backlog marker is not sent a second time.
    live = await send(a, chat_id, "m10")
    marker = await send(a, chat_id, "marker")
    for client in (b1, b2):
        frames = await queued_before(client, marker)
        assert [f["data"]["messageId"] for f in frames] == [live["messageId"]]


async def test_unacked_events_are_sent_again_after_reconnect_until_acked(
    user: Register, connect: Connect
) -> None:
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0])
    b = await online(connect, bob[0], auto_ack=False)
    chat_id = await direct_chat(a, bob[0])
    sent = [await send(a, chat_id, f"m{i}") for i in range(5)]
    first = await incoming(b, 5)
    assert [m["messageId"] for m in first] == [s["messageId"] for s in sent]
    await b.close()

    b = await connect(bob[0], auto_ack=False)
    again = await incoming(b, 5)
    assert [m["messageId"] for m in again] == [m["messageId"] for m in first]
    assert [m["inboxSeq"] for m in again] == [m["inboxSeq"] for m in first]
    assert (await next_queued(b))["event"] == "drained"
    # Acking the first three, then the rest (acks are cumulative).
    assert await b.call("ack", {"upTo": again[2]["inboxSeq"]}) == {"upTo": again[2]["inboxSeq"]}
    await ack(b, again[4]["inboxSeq"], chat_id)
    await b.close()

    b = await connect(bob[0], auto_ack=False)
    assert (await next_queued(b))["event"] == "drained"
    assert await queued_before(b, await send(a, chat_id, "marker")) == []


@pytest.mark.parametrize("settings", [{"ack_commit_delay_ms": 60_000}], indirect=True)
async def test_a_new_connection_does_not_get_back_what_the_last_one_acked(
    user: Register, connect: Connect
) -> None:
    """Acks wait up to a minute for a ride here: the device's next connection
    commits them before its first queue read instead of sending them again."""
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0])
    b = await online(connect, bob[0], auto_ack=False)
    chat_id = await direct_chat(a, bob[0])
    sent = [await send(a, chat_id, f"m{i}") for i in range(3)]
    got = await incoming(b, 3)
    assert await b.call("ack", {"upTo": got[2]["inboxSeq"]}) == {"upTo": got[2]["inboxSeq"]}

    again = await connect(bob[0], auto_ack=False)  # replaces b, whose ack is not committed
    assert (await next_queued(again))["event"] == "drained"
    marker = await send(a, chat_id, "marker")
    assert [m["messageId"] for m in await queued_before(again, marker)] == []
    assert [s["messageId"] for s in sent] == [m["messageId"] for m in got]


async def test_partially_acked_backlog_resumes_after_the_ack(
    user: Register, connect: Connect
) -> None:
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0])
    chat_id = await direct_chat(a, bob[0])
    sent = [await send(a, chat_id, f"m{i}") for i in range(6)]

    b = await connect(bob[0], auto_ack=False)
    got = await incoming(b, 6)
    await ack(b, got[3]["inboxSeq"], chat_id)
    await b.close()

    b = await connect(bob[0], auto_ack=False)
    rest = await incoming(b, 2)
    assert [m["messageId"] for m in rest] == [s["messageId"] for s in sent[4:]]
    assert (await next_queued(b))["event"] == "drained"


# -- duplicates --------------------------------------------------------------------


async def message_rows(container: Container, chat_id: str, body: str) -> int:
    async with container.engine.connect() as conn:
        query = (
            sa.select(sa.func.count())
            .select_from(messages)
            .where(messages.c.chat_id == chat_id, messages.c.body == body)
        )
        return int((await conn.execute(query)).scalar_one())


async def test_repeated_client_message_id_is_stored_and_delivered_once(
    user: Register, connect: Connect, container: Container
) -> None:
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0])
    b = await online(connect, bob[0], auto_ack=False)  # not acking: rows stay to be counted
    chat_id = await direct_chat(a, bob[0])

    # The same send repeated one after the other (a retry after a lost answer).
    first = await send(a, chat_id, "once", "hello once")
    retry = await send(a, chat_id, "once", "hello once")
    assert first["duplicate"] is False
    assert retry["duplicate"] is True
    assert (retry["messageId"], retry["seq"]) == (first["messageId"], first["seq"])
    assert retry["createdAt"] == first["createdAt"]

    # Ten at once, without waiting for any answer.
    data = {"chatId": chat_id, "clientMessageId": "burst", "message": "hello burst"}
    answers = await asyncio.gather(*(a.call("sendMessage", data) for _ in range(10)))
    assert len({x["messageId"] for x in answers}) == 1
    assert len({x["seq"] for x in answers}) == 1
    assert sorted(x["duplicate"] for x in answers) == [False] + [True] * 9

    last = await send(a, chat_id, "after", "after the burst")
    got = await incoming(b, 3)
    assert [m["messageId"] for m in got] == [
        first["messageId"],
        answers[0]["messageId"],
        last["messageId"],
    ]
    assert [m["seq"] for m in got] == [1, 2, 3]
    assert await queued_before(b, await send(a, chat_id, "marker")) == []
    assert await message_rows(container, chat_id, "hello once") == 1
    assert await message_rows(container, chat_id, "hello burst") == 1


async def test_same_client_message_id_from_another_device_is_a_new_message(
    user: Register, connect: Connect
) -> None:
    alice, bob = await person(user, 2), await person(user)
    a1, a2 = await online(connect, alice[0]), await online(connect, alice[1])
    b = await online(connect, bob[0])
    chat_id = await direct_chat(a1, bob[0])

    original = await send(a1, chat_id, "same-id", "from the phone")
    other_device = await send(a2, chat_id, "same-id", "from the laptop")
    assert other_device["duplicate"] is False
    assert other_device["messageId"] != original["messageId"]
    assert other_device["seq"] == original["seq"] + 1
    got = await incoming(b, 2)
    assert [m["message"] for m in got] == ["from the phone", "from the laptop"]


async def test_same_client_message_id_to_another_chat_is_a_new_message(
    user: Register, connect: Connect
) -> None:
    alice, bob, carol = await person(user), await person(user), await person(user)
    a = await online(connect, alice[0])
    c = await online(connect, carol[0])
    with_bob = await direct_chat(a, bob[0])
    with_carol = await direct_chat(a, carol[0])

    original = await send(a, with_bob, "same-id", "to bob")
    other_chat = await send(a, with_carol, "same-id", "to carol")
    assert other_chat["messageId"] != original["messageId"]
    assert other_chat["duplicate"] is False
    assert other_chat["seq"] == 1
    got = await incoming(c, 1)
    assert (got[0]["chatId"], got[0]["message"]) == (with_carol, "to carol")


# -- ordering ------------------------------------------------------------------------


async def test_concurrent_senders_in_a_group_get_one_gapless_order(
    user: Register, connect: Connect
) -> None:
    people = [await person(user) for _ in range(4)]
    clients = [await online(connect, p[0]) for p in people]
    senders, reader = clients[:3], clients[3]
    created = await senders[0].call(
        "createChat", {"participants": [p[0]["user_id"] for p in people[1:]], "name": "race"}
    )
    chat_id = created["chatId"]

    # Fifty sends on the wire at once from each, answers awaited together.
    answers = await asyncio.gather(*(burst(c, chat_id, f"s{i}", 50) for i, c in enumerate(senders)))
    # Seq 1 is the "created" system message; the 150 texts take 2..151, each once,
    # and each sender's own messages keep the order it sent them in.
    assert sorted(a["seq"] for part in answers for a in part) == list(range(2, 152))
    for part in answers:
        assert [a["seq"] for a in part] == sorted(a["seq"] for a in part)
    seq_to_id = {a["seq"]: a["messageId"] for part in answers for a in part}

    everything = await incoming(reader, 151, timeout=30)
    assert [m["seq"] for m in everything] == list(range(1, 152))
    assert everything[0]["kind"] == "system"
    assert {m["seq"]: m["messageId"] for m in everything[1:]} == seq_to_id
    for index, client in enumerate(senders):
        got = await incoming(client, 101, timeout=30)
        own = {a["seq"] for a in answers[index]}
        assert [m["seq"] for m in got] == [s for s in range(1, 152) if s not in own]
        assert all(seq_to_id[m["seq"]] == m["messageId"] for m in got[1:])
    # Nothing twice: no message before a marker, from the reader for the senders,
    # then from a sender for the reader.
    marker = await send(reader, chat_id, "marker-for-senders")
    for client in senders:
        assert [f for f in await queued_before(client, marker) if f["event"] == "message"] == []
    marker = await send(senders[0], chat_id, "marker-for-the-reader")
    assert [f for f in await queued_before(reader, marker) if f["event"] == "message"] == []


# -- receipts ------------------------------------------------------------------------


async def test_delivered_receipts_follow_acks_and_reach_offline_senders_later(
    user: Register, connect: Connect
) -> None:
    alice, bob = await person(user, 2), await person(user)
    a1 = await online(connect, alice[0])
    b = await online(connect, bob[0], auto_ack=False)
    chat_id = await direct_chat(a1, bob[0])

    sent = [await send(a1, chat_id, f"m{i}") for i in range(3)]
    got = await incoming(b, 3)
    # Received is not delivered until the device acks: no receipt before a marker
    # from Bob's device (which commits after anything that device did before).
    first_marker = await send(b, chat_id, "b-marker-1")
    assert await queued_before(a1, first_marker) == []

    await b.call("ack", {"upTo": got[0]["inboxSeq"]})
    receipt = await a1.next_event("receipt")
    assert receipt["data"]["type"] == "delivered"
    assert receipt["data"]["chatId"] == chat_id
    assert receipt["data"]["userId"] == bob[0]["user_id"]
    assert receipt["data"]["upToSeq"] == sent[0]["seq"]

    await b.call("ack", {"upTo": got[2]["inboxSeq"]})  # two at once: one receipt, the last seq
    receipt = await a1.next_event("receipt")
    assert receipt["data"]["upToSeq"] == sent[2]["seq"]
    second_marker = await send(b, chat_id, "b-marker-2")
    assert await queued_before(a1, second_marker) == []  # one receipt, not one per message

    # Alice's other device was offline: it finds her messages, Bob's markers and
    # the receipts, in the order they happened.
    a2 = await connect(alice[1])
    frames = [await next_queued(a2) for _ in range(8)]
    assert [f["event"] for f in frames] == ["message"] * 4 + ["receipt"] * 2 + [
        "message",
        "drained",
    ]
    assert [f["data"]["messageId"] for f in frames[:4]] == [
        *(s["messageId"] for s in sent),
        first_marker["messageId"],
    ]
    assert [f["data"]["upToSeq"] for f in frames[4:6]] == [sent[0]["seq"], sent[2]["seq"]]
    assert all(f["data"]["type"] == "delivered" for f in frames[4:6])
    assert frames[6]["data"]["messageId"] == second_marker["messageId"]
    assert_inbox_order(frames[:7])


def read_receipts(frames: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [
        (f["data"]["userId"], f["data"]["upToSeq"])
        for f in frames
        if f.get("event") == "receipt" and f["data"]["type"] == "read"
    ]


async def test_mark_read_sends_read_receipts_clamped_to_the_last_seq(
    user: Register, connect: Connect
) -> None:
    alice, bob = await person(user, 2), await person(user, 2)
    a1, a2 = await online(connect, alice[0]), await online(connect, alice[1])
    b1, b2 = await online(connect, bob[0]), await online(connect, bob[1])
    chat_id = await direct_chat(a1, bob[0])
    sent = [await send(a1, chat_id, f"m{i}") for i in range(3)]
    await incoming(b1, 3)
    await incoming(b2, 3)
    await incoming(a2, 3)

    answer = await b1.call("markRead", {"chatId": chat_id, "upToSeq": 1000})
    assert answer == {"upToSeq": sent[-1]["seq"]}
    after_read = await send(b1, chat_id, "barrier", "after the read")
    last = sent[-1]["seq"]
    # The sender's devices are told; so is the reader's other device, to keep its
    # read state in step; the device that marked the chat read is not.
    for client in (a1, a2, b2):
        assert read_receipts(await queued_before(client, after_read)) == [(bob[0]["user_id"], last)]
    reply = await send(a1, chat_id, "reply", "a reply")  # b1 gets no copy of its own barrier
    assert read_receipts(await queued_before(b1, reply)) == []

    chats = (await b2.call("getChats"))["chats"]
    assert [c["readSeq"] for c in chats if c["chatId"] == chat_id] == [last]


async def test_a_read_receipt_goes_only_to_the_senders_of_what_was_read(
    user: Register, connect: Connect
) -> None:
    alice, bob, carol, dave = [await person(user) for _ in range(4)]
    a, b, c, d = [await online(connect, p[0]) for p in (alice, bob, carol, dave)]
    members = [p[0]["user_id"] for p in (bob, carol, dave)]
    chat_id = (await a.call("createChat", {"participants": members, "name": "g"}))["chatId"]
    await send(a, chat_id, "a1", "from alice")
    second = await send(c, chat_id, "c1", "from carol")
    third = await send(b, chat_id, "b1", "from bob")  # after what dave reads first
    for client in (a, c, d):
        await queued_before(client, third)

    await d.call("markRead", {"chatId": chat_id, "upToSeq": second["seq"]})
    barrier = await send(d, chat_id, "d1", "barrier")
    dave_id = dave[0]["user_id"]
    assert read_receipts(await queued_before(a, barrier)) == [(dave_id, second["seq"])]
    assert read_receipts(await queued_before(c, barrier)) == [(dave_id, second["seq"])]
    # Bob sent nothing dave read: he is not told that dave read anything.
    assert read_receipts(await queued_before(b, barrier)) == []

    # Reading further covers bob's message only: only bob is told.
    await d.call("markRead", {"chatId": chat_id, "upToSeq": third["seq"]})
    barrier = await send(d, chat_id, "d2", "second barrier")
    assert read_receipts(await queued_before(b, barrier)) == [(dave_id, third["seq"])]
    assert read_receipts(await queued_before(a, barrier)) == []
    assert read_receipts(await queued_before(c, barrier)) == []


# -- flow control ----------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{"ws_max_in_flight": 20}], indirect=True, ids=["window20"])
async def test_at_most_the_window_of_events_is_unacked(user: Register, connect: Connect) -> None:
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0])
    b = await online(connect, bob[0], auto_ack=False)
    chat_id = await direct_chat(a, bob[0])
    sent = await asyncio.gather(*(send(a, chat_id, f"m{i:03d}") for i in range(100)))

    got = await incoming(b, 20)
    await assert_sent_up_to(b, got[-1]["inboxSeq"])
    await b.call("ack", {"upTo": got[9]["inboxSeq"]})
    got += await incoming(b, 10)
    await assert_sent_up_to(b, got[-1]["inboxSeq"])

    while len(got) < 100:
        await b.send({"type": "ack", "data": {"upTo": got[-1]["inboxSeq"]}})
        got += await incoming(b, min(20, 100 - len(got)))
    assert [m["seq"] for m in got] == list(range(1, 101))
    assert [m["messageId"] for m in got] == [s["messageId"] for s in sorted(sent, key=_seq)]
    await b.call("ack", {"upTo": got[-1]["inboxSeq"]})
    assert await queued_before(b, await send(a, chat_id, "marker")) == []


def _seq(answer: dict[str, Any]) -> int:
    seq: int = answer["seq"]
    return seq


async def test_a_device_that_stops_reading_does_not_hold_up_others(
    user: Register, connect: Connect, server: LiveServer
) -> None:
    alice, bob = await person(user), await person(user, 2)
    carol, dave = await person(user), await person(user)
    a = await online(connect, alice[0])
    b2 = await online(connect, bob[1])
    c, d = await online(connect, carol[0]), await online(connect, dave[0])
    to_bob = await direct_chat(a, bob[0])
    to_dave = await direct_chat(c, dave[0])

    # Bob's phone connects, then its app freezes: no reads, no acks. Its socket
    # buffers fill up (small client queue) and the server cannot write to it.
    stalled = await WsClient.open(
        server.ws_url, bob[0]["access_token"], auto_ack=False, max_queue=1, close_timeout=1
    )
    try:
        await stalled.next_event("drained")
        stalled._reader.cancel()
        body = "x" * 2000
        window = asyncio.Semaphore(64)

        async def one(i: int) -> Any:
            async with window:
                return await send(a, to_bob, f"m{i:04d}", f"{i:04d} {body}")

        sending = asyncio.ensure_future(asyncio.gather(*(one(i) for i in range(2000))))
        # Meanwhile Carol and Dave chat; each message arrives promptly.
        delays = []
        for i in range(10):
            started = time.monotonic()
            await send(c, to_dave, f"c{i}")
            frame = await d.next_event("message", timeout=10)
            delays.append(time.monotonic() - started)
            assert frame["data"]["message"] == f"text c{i}"
        sent = await asyncio.wait_for(sending, 120)
        assert max(delays) < 3, delays
        # Bob's other device keeps up with the whole burst.
        got = await incoming(b2, 2000, timeout=60)
        assert [m["seq"] for m in got] == list(range(1, 2001))
        assert [s["seq"] for s in sent] == list(range(1, 2001))
        # Carol is still answered at once after the burst.
        started = time.monotonic()
        await send(c, to_dave, "after")
        await d.next_event("message", timeout=10)
        assert time.monotonic() - started < 3
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stalled.socket.close(), 5)

    # The frozen phone comes back on a new socket and gets everything, in order.
    fresh = await connect(bob[0])
    frames = await queued_until(fresh, 2000, timeout=90)
    assert_inbox_order(frames)
    got = [f["data"] for f in frames if f.get("event") == "message"]
    assert [m["seq"] for m in got] == list(range(1, 2001))
    assert [m["message"][:4] for m in got] == [f"{i:04d}" for i in range(2000)]
    assert (await next_queued(fresh))["event"] == "drained"


async def test_acking_past_what_was_sent_is_invalid(user: Register, connect: Connect) -> None:
    alice, bob = await person(user), await person(user)
    a = await online(connect, alice[0], auto_ack=False)  # Bob's queue holds only what he is sent
    b = await online(connect, bob[0], auto_ack=False)
    answer = await b.request("ack", {"upTo": 1})  # nothing was sent yet
    assert answer["ok"] is False
    assert answer["error"]["code"] == "invalid_ack"

    chat_id = await direct_chat(a, bob[0])
    await send(a, chat_id, "m1")
    await send(a, chat_id, "m2")
    got = await incoming(b, 2)
    answer = await b.request("ack", {"upTo": got[-1]["inboxSeq"] + 1})
    assert answer["ok"] is False
    assert answer["error"]["code"] == "invalid_ack"
    # No delivered receipt for a refused ack: none before a marker from Bob's device.
    assert await queued_before(a, await send(b, chat_id, "marker")) == []

    # The connection goes on; a valid ack still counts.
    await ack(b, got[-1]["inboxSeq"], chat_id)
    receipt = await a.next_event("receipt")
    assert receipt["data"]["upToSeq"] == 2
    await b.close()
    b = await connect(bob[0], auto_ack=False)
    assert (await next_queued(b))["event"] == "drained"
