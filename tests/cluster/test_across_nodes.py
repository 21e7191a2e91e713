"""Everything a connection does works whichever node holds it (on Redis and on NATS)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from tests.cluster.conftest import Node, Person, StartNode
from tests.live import WsClient
from tests.support import Outbox, bearer, burst, register


async def send(ws: WsClient, chat_id: str, text: str) -> dict[str, Any]:
    data = {"chatId": chat_id, "clientMessageId": text, "message": text}
    answer: dict[str, Any] = await ws.call("sendMessage", data)
    return answer


async def message(ws: WsClient, text: str, timeout: float = 5) -> dict[str, Any]:
    """The next message event, which must be ``text``."""
    frame = await ws.next_event("message", timeout=timeout)
    assert frame["data"]["message"] == text, frame
    data: dict[str, Any] = frame["data"]
    return data


async def receipt(ws: WsClient, kind: str) -> dict[str, Any]:
    while True:
        frame = await ws.next_event("receipt")
        if frame["data"]["type"] == kind:
            data: dict[str, Any] = frame["data"]
            return data


async def test_messages_and_receipts_cross_nodes_in_both_directions(
    nodes: tuple[Node, Node], person: Person
) -> None:
    a, b = nodes
    alice, bob = await person(), await person()
    on_a, on_b = await a.connect(alice), await b.connect(bob)
    chat_id = (await on_a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]

    sent = await send(on_a, chat_id, "from a")
    got = await message(on_b, "from a")
    assert (got["messageId"], got["seq"]) == (sent["messageId"], sent["seq"])
    delivered = await receipt(on_a, "delivered")  # bob's node acked; alice's node tells her
    assert (delivered["userId"], delivered["upToSeq"]) == (bob["user_id"], sent["seq"])

    await on_b.call("markRead", {"chatId": chat_id, "upToSeq": sent["seq"]})
    read = await receipt(on_a, "read")
    assert (read["userId"], read["upToSeq"]) == (bob["user_id"], sent["seq"])

    reply = await send(on_b, chat_id, "from b")
    assert (await message(on_a, "from b"))["seq"] == reply["seq"] == sent["seq"] + 1


async def test_a_users_devices_on_both_nodes_get_every_message_once_in_order(
    nodes: tuple[Node, Node], person: Person
) -> None:
    a, b = nodes
    alice_phone, bob = await person(), await person()
    alice_laptop = await person(phone=alice_phone["phone"], device="laptop")
    phone, laptop, on_b = (
        await a.connect(alice_phone),
        await b.connect(alice_laptop),
        await b.connect(bob),
    )
    chat_id = (await on_b.call("createChat", {"participants": [alice_phone["user_id"]]}))["chatId"]

    answers = await burst(on_b, chat_id, "m", 50)
    for ws in (phone, laptop):
        frames = [(await ws.next_event("message"))["data"] for _ in range(50)]
        assert [f["messageId"] for f in frames] == [x["messageId"] for x in answers]
        assert [f["inboxSeq"] for f in frames] == sorted({f["inboxSeq"] for f in frames})
    # What alice sends from one node reaches her other device on the other node too.
    mine = await send(phone, chat_id, "from my phone")
    assert (await message(laptop, "from my phone"))["messageId"] == mine["messageId"]


async def test_presence_and_typing_reach_the_other_node(
    nodes: tuple[Node, Node], person: Person
) -> None:
    a, b = nodes
    alice, bob = await person(), await person()
    on_a = await a.connect(alice)
    chat_id = (await on_a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]

    on_b = await b.connect(bob)
    came = await on_a.next_event("presence")
    assert came["data"] == {"userId": bob["user_id"], "state": "online", "lastSeen": None}
    asked = await on_a.call("getPresence", {"userIds": [bob["user_id"]]})
    assert [p["state"] for p in asked["presence"]] == ["online"]  # online on the other node

    await on_b.send({"type": "typing", "data": {"chatId": chat_id, "state": "composing"}})
    typing = await on_a.next_event("typing")
    assert typing["data"] == {"chatId": chat_id, "userId": bob["user_id"], "state": "composing"}

    await on_b.close()
    went = await on_a.next_event("presence")
    assert (went["data"]["userId"], went["data"]["state"]) == (bob["user_id"], "offline")
    asked = await on_a.call("getPresence", {"userIds": [bob["user_id"]]})
    assert [p["state"] for p in asked["presence"]] == ["offline"]


async def test_a_device_connecting_on_another_node_closes_its_older_socket(
    nodes: tuple[Node, Node], person: Person
) -> None:
    a, b = nodes
    alice, bob = await person(), await person()
    on_a = await a.connect(alice)
    chat_id = (await on_a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    old = await a.connect(bob)
    new = await b.connect(bob)
    assert await old.closed() == 4409
    await send(on_a, chat_id, "after the move")
    assert (await message(new, "after the move"))["chatId"] == chat_id


async def test_a_device_revoked_through_one_node_loses_its_socket_on_the_other_at_once(
    nodes: tuple[Node, Node], person: Person
) -> None:
    a, b = nodes
    phone = await person()
    laptop = await person(phone=phone["phone"], device="laptop")
    on_b = await b.connect(phone)
    started = time.monotonic()
    # The laptop revokes the phone through node a; the phone's socket is on node b.
    response = await a.http.delete(f"/v1/devices/{phone['device_id']}", headers=bearer(laptop))
    assert response.status_code == 204, response.text
    assert await on_b.closed(timeout=5) == 1008
    assert on_b.close_reason == "device_revoked"
    assert time.monotonic() - started < 1.0  # not the 5 s sweep: the bus told node b


def die_before_publishing(node: Node) -> None:
    """Node ``node`` is as if killed: it beats no more, and publishes nothing from now on
    (what it commits reaches the database only, as when a crash falls between a commit
    and its publish). Its HTTP and WebSocket listener stays up, to send through it."""
    for task in node.container.bus._tasks:  # type: ignore[attr-defined]
        task.cancel()


async def test_what_a_dead_node_committed_but_never_published_reaches_the_other_node(
    start_node: StartNode, tmp_path: Path
) -> None:
    timeout = 1.0  # PIGEON_BUS_NODE_TIMEOUT_SECONDS, 10 by default
    a = await start_node("a", bus_node_timeout_seconds=timeout)
    b = await start_node("b", bus_node_timeout_seconds=timeout)
    outbox = Outbox(tmp_path / "a" / "sms-outbox.jsonl")
    alice = await register(a.http, outbox, "+14155550101")
    bob = await register(a.http, outbox, "+14155550102")
    on_a, on_b = await a.connect(alice), await b.connect(bob)
    chat_id = (await on_a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    before = await send(on_a, chat_id, "before")
    assert (await message(on_b, "before"))["seq"] == before["seq"]

    die_before_publishing(a)
    sent = await send(on_a, chat_id, "committed, never published")  # answered: it is stored
    started = time.monotonic()
    # Nothing else will be sent to bob: only node b noticing a's death brings it.
    got = await message(on_b, "committed, never published", timeout=5 * timeout)
    assert (got["messageId"], got["seq"]) == (sent["messageId"], sent["seq"])
    assert time.monotonic() - started >= timeout * 0.5  # it came by the resync, not the bus


async def test_nodes_committing_into_one_group_at_once_keep_seqs_dense_and_ordered(
    nodes: tuple[Node, Node], person: Person
) -> None:
    a, b = nodes
    people = [await person() for _ in range(6)]
    sockets = [await (a if i % 2 else b).connect(p) for i, p in enumerate(people)]
    others = [p["user_id"] for p in people[1:]]
    chat_id = (await sockets[0].call("createChat", {"participants": others, "name": "g"}))["chatId"]
    count = 40
    answers = await asyncio.gather(
        *(burst(ws, chat_id, f"s{i}", count) for i, ws in enumerate(sockets))
    )
    seqs = sorted(x["seq"] for sent in answers for x in sent)
    assert seqs == list(range(2, 2 + count * len(sockets)))  # 1 is "created"
    for sent in answers:  # each sender's messages in the order sent
        assert [x["seq"] for x in sent] == sorted(x["seq"] for x in sent)
    expected = count * (len(sockets) - 1)
    for ws in sockets:
        frames = []
        while len(frames) < expected:
            frame = await ws.next_event("message", timeout=15)
            if frame["data"]["kind"] == "text":
                frames.append(frame["data"])
        got = [f["seq"] for f in frames]
        assert got == sorted(set(got))  # every other sender's message, once, in seq order
        assert len(got) == expected
        inbox = [f["inboxSeq"] for f in frames]
        assert all(x < y for x, y in itertools.pairwise(inbox))
