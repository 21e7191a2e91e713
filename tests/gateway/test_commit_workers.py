"""Several group committers at once (PIGEON_COMMIT_WORKERS=3, PostgreSQL), end to end.

With more than one worker, each device's sends, acks and read marks go to the
worker its id picks, so two devices' batches commit concurrently. What a user
sees must not change: every message reaches every other device once, a chat's
messages arrive in seq order with no seq missing, and a sender's messages keep
the order it sent them in.

Concurrent batches also publish in any order: a batch that committed first
(lower inbox seqs) may reach a receiving connection after a later one. The
connection then sees a gap in inboxSeq and must read the queue back from the
database. Many senders writing to one device at once make that possible; the
receiver must still get its inbox seqs 1..N, each once, in order. On one node
the first batch's publish is rarely that late (it publishes right after its
commit; the later batch still has statements to run), so the last test makes
the late publish certain: a second node shares the database, and what its
senders commit is never published to the first node at all (docs/protocol.md,
"A multi-node bus"); the next event the first node publishes reveals the gap.

SQLite always runs one worker, so these run on PostgreSQL only. Each ends at a
barrier (tests.support): a marker message committed after every send was
answered, so the events before it are exactly what the device got.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pigeon.api.app import create_app
from pigeon.bootstrap import build
from pigeon.config import Settings
from tests.gateway.conftest import Connect, Register
from tests.live import LiveServer, WsClient
from tests.support import FakeClock, before_message, burst, mark, online

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

WORKERS = 3
_numbers = itertools.count(6000)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"commit_workers": WORKERS})


@pytest.fixture
async def far_node(settings: Settings, clock: FakeClock) -> AsyncIterator[LiveServer]:
    """A second Pigeon node on the same database, with a bus of its own."""
    container = build(settings, clock=clock)
    app = create_app(settings, container)
    try:
        async with app.router.lifespan_context(app):
            live = LiveServer(app)
            await live.start()
            try:
                yield live
            finally:
                await live.stop()
    finally:
        await container.close()


async def person(user: Register, devices: int = 1) -> list[dict[str, Any]]:
    phone = f"+1415555{next(_numbers):04d}"
    return [await user(phone, device=f"device-{index}") for index in range(devices)]


def assert_sent_in_order(answers: list[dict[str, Any]]) -> None:
    """A device's messages get seqs in the order it sent them."""
    seqs = [answer["seq"] for answer in answers]
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs


def assert_whole_queue(frames: list[dict[str, Any]]) -> None:
    """The device got its queue from its first entry on: inboxSeq 1, 2, 3, ... each once."""
    seqs = [frame["data"]["inboxSeq"] for frame in frames if frame["event"] in QUEUED]
    assert seqs == list(range(1, len(seqs) + 1)), seqs


QUEUED = {"message", "receipt"}


async def test_a_group_written_by_many_devices_at_once_reaches_everyone_once_in_order(
    user: Register, connect: Connect
) -> None:
    senders_count, per_sender = 8, 25
    people = [await person(user) for _ in range(senders_count + 1)]
    clients = [await online(connect, p[0]) for p in people]
    senders, reader = clients[:senders_count], clients[senders_count]
    created = await senders[0].call(
        "createChat", {"participants": [p[0]["user_id"] for p in people[1:]], "name": "busy"}
    )
    chat_id = created["chatId"]

    answers = await asyncio.gather(
        *(burst(client, chat_id, f"s{i}", per_sender) for i, client in enumerate(senders))
    )
    total = senders_count * per_sender
    # Seq 1 is "created"; the texts take 2..total+1, each once, each sender's in its order.
    assert sorted(a["seq"] for part in answers for a in part) == list(range(2, total + 2))
    for part in answers:
        assert_sent_in_order(part)
    id_of = {a["seq"]: a["messageId"] for part in answers for a in part}

    # The reader marks the end for the senders, a sender for the reader.
    to_senders = await mark(reader, chat_id)
    to_reader = await mark(senders[0], chat_id)
    for index, client in enumerate([*senders, reader]):
        marker = to_reader if client is reader else to_senders
        frames = await before_message(client, marker["messageId"], timeout=60)
        assert_whole_queue(frames)
        got = [frame["data"] for frame in frames if frame["event"] == "message"]
        own = {a["seq"] for a in answers[index]} if client is not reader else set()
        expected = [1] + [seq for seq in range(2, total + 2) if seq not in own]
        assert [m["seq"] for m in got] == expected, index
        assert [m["messageId"] for m in got[1:]] == [id_of[seq] for seq in expected[1:]]


async def test_a_one_to_one_chat_written_from_four_devices_at_once_stays_in_order(
    user: Register, connect: Connect
) -> None:
    alice, bob = await person(user, 2), await person(user, 2)
    devices = {f"a{i}": await online(connect, s) for i, s in enumerate(alice)}
    devices.update({f"b{i}": await online(connect, s) for i, s in enumerate(bob)})
    chat_id = (await devices["a0"].call("createChat", {"participants": [bob[0]["user_id"]]}))[
        "chatId"
    ]
    per_device = 40

    answers = dict(
        zip(
            devices,
            await asyncio.gather(
                *(burst(client, chat_id, name, per_device) for name, client in devices.items())
            ),
            strict=True,
        )
    )
    total = len(devices) * per_device
    assert sorted(a["seq"] for part in answers.values() for a in part) == list(range(1, total + 1))
    for part in answers.values():
        assert_sent_in_order(part)
    id_of = {a["seq"]: a["messageId"] for part in answers.values() for a in part}

    # a0 marks the end for the others, b0 for a0 (a device does not get its own).
    to_others = await mark(devices["a0"], chat_id)
    to_a0 = await mark(devices["b0"], chat_id)
    for name, client in devices.items():
        marker = to_a0 if name == "a0" else to_others
        frames = await before_message(client, marker["messageId"], timeout=60)
        assert_whole_queue(frames)
        got = [frame["data"] for frame in frames if frame["event"] == "message"]
        own = {a["seq"] for a in answers[name]}
        expected = [seq for seq in range(1, total + 1) if seq not in own]
        assert [m["seq"] for m in got] == expected, name
        assert [m["messageId"] for m in got] == [id_of[seq] for seq in expected], name


async def test_many_senders_to_one_device_get_its_queue_in_order_without_holes(
    user: Register, connect: Connect
) -> None:
    """The late-publish branch: concurrent batches allocate one device's inbox seqs."""
    senders_count, per_sender = 10, 30
    receiver_session = (await person(user))[0]
    receiver = await online(connect, receiver_session)
    senders = []
    chats = []
    for _ in range(senders_count):
        client = await online(connect, (await person(user))[0])
        chat = await client.call("createChat", {"participants": [receiver_session["user_id"]]})
        senders.append(client)
        chats.append(chat["chatId"])

    answers = await asyncio.gather(
        *(
            burst(client, chat_id, f"s{i}", per_sender)
            for i, (client, chat_id) in enumerate(zip(senders, chats, strict=True))
        )
    )
    for part in answers:
        assert [a["seq"] for a in part] == list(range(1, per_sender + 1))

    marker = await mark(senders[0], chats[0])
    frames = await before_message(receiver, marker["messageId"], timeout=60)
    total = senders_count * per_sender
    # Its queue holds only these messages: inbox seqs 1..total, each once, in order.
    assert [f["data"]["inboxSeq"] for f in frames if f["event"] in QUEUED] == list(
        range(1, total + 1)
    )
    got = [f["data"] for f in frames if f["event"] == "message"]
    for chat_id, part in zip(chats, answers, strict=True):
        in_chat = [m for m in got if m["chatId"] == chat_id]
        assert [m["seq"] for m in in_chat] == list(range(1, per_sender + 1)), chat_id
        assert [m["messageId"] for m in in_chat] == [a["messageId"] for a in part]


async def test_a_publish_that_never_comes_is_read_back_in_order(
    user: Register, connect: Connect, far_node: LiveServer
) -> None:
    """Far senders' messages reach the receiver's node only through the database."""
    receiver_session = (await person(user))[0]
    receiver = await online(connect, receiver_session)
    far: list[WsClient] = []
    try:

        async def sender(on_far_node: bool) -> tuple[WsClient, str]:
            session = (await person(user))[0]
            if on_far_node:
                client = await WsClient.open(far_node.ws_url, session["access_token"])
                await client.next_event("drained")
                far.append(client)
            else:
                client = await online(connect, session)
            chat = await client.call("createChat", {"participants": [receiver_session["user_id"]]})
            return client, chat["chatId"]

        far_senders = [await sender(True) for _ in range(4)]
        near_senders = [await sender(False) for _ in range(2)]

        # One far message, then one near: the near one's publish shows inboxSeq 2 to a
        # connection that sent nothing yet, so the connection reads 1 and 2 back.
        far_first = await mark(*far_senders[0], text="far first")
        near_first = await mark(*near_senders[0], text="near first")
        frames = await before_message(receiver, near_first["messageId"])
        assert [(f["data"]["inboxSeq"], f["data"]["messageId"]) for f in frames] == [
            (1, far_first["messageId"])
        ]
        assert frames[0]["data"]["seq"] == far_first["seq"]  # read back, not published

        # Then everyone at once.
        per_sender = 25
        everyone = far_senders + near_senders
        answers = await asyncio.gather(
            *(
                burst(client, chat_id, f"s{i}", per_sender)
                for i, (client, chat_id) in enumerate(everyone)
            )
        )
        marker = await mark(*near_senders[1])
        frames = await before_message(receiver, marker["messageId"], timeout=60)
        total = len(everyone) * per_sender
        assert [f["data"]["inboxSeq"] for f in frames if f["event"] in QUEUED] == list(
            range(3, total + 3)
        )
        got = [f["data"] for f in frames if f["event"] == "message"]
        for (_, chat_id), part in zip(everyone, answers, strict=True):
            in_chat = [m for m in got if m["chatId"] == chat_id]
            assert [m["messageId"] for m in in_chat] == [a["messageId"] for a in part], chat_id
            assert [m["seq"] for m in in_chat] == [a["seq"] for a in part], chat_id
            assert_sent_in_order(part)
    finally:
        for client in far:
            await client.close()
