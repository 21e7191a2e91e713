"""Forwarding and quoted replies over live sockets, on both engines.

The hop count lives in the send records, so a forward is counted from the
message it names, which its sender must be able to see; a message forwarded
many times goes to one chat at a time. A reply's quote (the excerpt from the
replier's client and the quoted sender from the server) travels with it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tests.gateway.conftest import Connect, Register
from tests.gateway.test_message_changes import backlog, direct, person, refused, send
from tests.live import WsClient
from tests.support import FakeClock, online


async def received(ws: WsClient, message_id: str) -> dict[str, Any]:
    """The data of the message ``message_id`` on ``ws`` (skipping what came before)."""
    while True:
        event = await ws.next_event("message", 10)
        if event["data"]["messageId"] == message_id:
            data: dict[str, Any] = event["data"]
            return data


def forward(chat_id: str, original: dict[str, Any], origin_chat: str) -> dict[str, Any]:
    return {"forwardedFrom": {"chatId": origin_chat, "messageId": original["messageId"]}}


async def test_forwards_count_hops_and_many_times_go_to_one_chat_at_a_time(
    user: Register, connect: Connect, clock: FakeClock
) -> None:
    alice, [bob], carol = await person(user, 2), await person(user), await person(user, 2)
    a, b = await online(connect, alice[0]), await online(connect, bob)
    c = await online(connect, carol[0])
    with_bob = await direct(a, bob)
    with_carol = await direct(b, carol[0])
    attachment = await a.call(
        "createAttachment",
        {
            "body": base64.b64encode(b"menu").decode(),
            "hash": hashlib.sha256(b"menu").hexdigest(),
            "fileName": "menu.txt",
        },
    )
    original = await send(a, with_bob, "the menu", attachments=[attachment["attachmentId"]])
    assert "forwarded" not in await received(b, original["messageId"])

    # Bob forwards it to Carol, the file by id (Alice's second device still holds the message).
    first = await send(
        b,
        with_carol,
        "the menu",
        attachments=[attachment["attachmentId"]],
        **forward(with_carol, original, with_bob),
    )
    got = await received(c, first["messageId"])
    assert got["forwarded"] == {"hops": 1, "manyTimes": False}
    assert got["attachments"][0]["attachmentId"] == attachment["attachmentId"]

    # Forwarded on and on within Bob and Carol's chat: the fifth hop is "many times".
    latest = first
    for hops in range(2, 6):
        latest = await send(b, with_carol, "the menu", **forward(with_carol, latest, with_carol))
        assert (await received(c, latest["messageId"]))["forwarded"] == {
            "hops": hops,
            "manyTimes": hops >= 5,
        }
    # Carol's second device was offline: it sees the same flags.
    later = [d for name, d in await backlog(connect, carol[1]) if name == "message"]
    assert [d.get("forwarded", {}).get("hops") for d in later][-5:] == [1, 2, 3, 4, 5]
    assert later[-1]["forwarded"]["manyTimes"] is True

    # One chat at a time: a second forward of it by Bob waits out the interval.
    await send(b, with_carol, "the menu", **forward(with_carol, latest, with_carol))
    with_alice = with_bob
    data = {
        "chatId": with_alice,
        "clientMessageId": "again",
        "message": "the menu",
        **forward(with_alice, latest, with_carol),
    }
    assert (await refused(b, "sendMessage", data))["code"] == "forward_limited"
    clock.advance(seconds=61)
    again = await b.call("sendMessage", data)
    assert (await received(a, again["messageId"]))["forwarded"] == {"hops": 6, "manyTimes": True}


async def test_only_what_the_sender_can_see_is_forwarded(user: Register, connect: Connect) -> None:
    [alice], [bob], [eve], [mallory] = [await person(user) for _ in range(4)]
    a, b, e, m = [await online(connect, s) for s in (alice, bob, eve, mallory)]
    group = (await a.call("createChat", {"participants": [bob["user_id"], eve["user_id"]]}))[
        "chatId"
    ]
    secret = await send(a, group, "members only")
    await a.call(
        "modifyChatParticipants",
        {"chatId": group, "userId": eve["user_id"], "operation": "REMOVE"},
    )
    gone = await send(a, group, "deleted soon")
    await a.call("deleteMessage", {"chatId": group, "messageId": gone["messageId"]})
    with_eve, with_mallory = await direct(e, mallory), await direct(m, eve)

    def forwarding(chat_id: str, message_id: str) -> dict[str, Any]:
        return {
            "chatId": chat_id,
            "clientMessageId": message_id,
            "message": "fwd",
            "forwardedFrom": {"chatId": group, "messageId": message_id},
        }

    unknown = await refused(e, "sendMessage", forwarding(with_eve, "01JQ81NOSUCHMESSAGE0000000"))
    assert unknown["code"] == "message_not_found"
    assert await refused(e, "sendMessage", forwarding(with_eve, secret["messageId"])) == unknown
    assert await refused(m, "sendMessage", forwarding(with_mallory, secret["messageId"])) == unknown
    with_alice = await direct(b, alice)
    assert await refused(b, "sendMessage", forwarding(with_alice, gone["messageId"])) == unknown
    ok = await b.call("sendMessage", forwarding(with_alice, secret["messageId"]))
    assert (await received(a, ok["messageId"]))["forwarded"]["hops"] == 1


async def test_a_reply_carries_its_quote(user: Register, connect: Connect) -> None:
    [alice], bob = await person(user), await person(user, 2)
    a, b = await online(connect, alice), await online(connect, bob[0])
    chat_id = await direct(a, bob[0])
    question = await send(a, chat_id, "lunch at noon? the usual place")
    await received(b, question["messageId"])
    excerpt = "lunch at noon?"
    reply = await send(
        b, chat_id, "yes!", replyTo={"messageId": question["messageId"], "excerpt": excerpt}
    )
    got = await received(a, reply["messageId"])
    assert got["replyTo"] == question["messageId"]
    assert got["quote"] == {"senderId": alice["user_id"], "excerpt": excerpt}
    # The quoted message deleted for everyone: the reply still renders its quote.
    await a.call("deleteMessage", {"chatId": chat_id, "messageId": question["messageId"]})
    later = [d for name, d in await backlog(connect, bob[1]) if name == "message"]
    assert later[-1]["quote"] == {"senderId": alice["user_id"], "excerpt": excerpt}
    # A plain replyTo still works, without a quote; an excerpt has a limit.
    plain = await send(b, chat_id, "ok", replyTo=question["messageId"])
    assert "quote" not in await received(a, plain["messageId"])
    data = {
        "chatId": chat_id,
        "clientMessageId": "long",
        "message": "hm",
        "replyTo": {"messageId": question["messageId"], "excerpt": "x" * 201},
    }
    assert (await refused(b, "sendMessage", data))["code"] == "reply_excerpt_too_long"
