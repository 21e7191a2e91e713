"""Mentions: only of members, carried by the message, and heard through a mute."""

from __future__ import annotations

import httpx

from tests.fakes.webpush import FakeWebPush
from tests.gateway.conftest import Connect, Register
from tests.push.test_preferences import quiet
from tests.push.test_webpush import subscribe
from tests.support import bearer, mark, online


async def test_mentions_must_be_members_and_travel_with_the_message(
    connect: Connect, user: Register
) -> None:
    alice, bob, stranger = await user(), await user(), await user()
    on_alice = await online(connect, alice)
    on_bob = await online(connect, bob)
    chat_id = (await on_alice.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]

    refused = await on_alice.request(
        "sendMessage",
        {
            "chatId": chat_id,
            "clientMessageId": "who",
            "message": "hey @stranger",
            "mentions": [bob["user_id"], stranger["user_id"]],
        },
    )
    assert refused["ok"] is False
    assert refused["error"]["code"] == "invalid_mentions"

    data = {
        "chatId": chat_id,
        "clientMessageId": "bob",
        "message": "hey @bob",
        "mentions": [bob["user_id"], bob["user_id"]],
    }
    sent = await on_alice.call("sendMessage", data)
    # A 1:1 chat starts without a system message: the first message bob gets is
    # this one, so the refused send reached nobody.
    frame = await on_bob.next_event("message")
    assert frame["data"]["messageId"] == sent["messageId"]
    assert frame["data"]["mentions"] == [bob["user_id"]]


async def test_a_mention_or_a_reply_is_pushed_through_a_mute(
    client: httpx.AsyncClient, connect: Connect, user: Register, webpush: FakeWebPush
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    on_alice = await online(connect, alice)
    on_bob = await online(connect, bob)
    group = (
        await on_alice.call(
            "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "g"}
        )
    )["chatId"]
    mine = await mark(on_bob, group, "bob's question")
    await on_bob.close()
    await quiet(connect, bob, group)
    phone = await subscribe(client, webpush, bob)
    response = await client.put(
        f"/v1/chats/{group}/mute", json={"duration": "always"}, headers=bearer(bob)
    )
    assert response.status_code == 200

    await mark(on_alice, group, "chatter")
    mention = {
        "chatId": group,
        "clientMessageId": "m1",
        "message": "@bob",
        "mentions": [bob["user_id"]],
    }
    await on_alice.call("sendMessage", mention)
    [push] = await webpush.wait_for(phone, 1)
    # The first push is for the mention: the chatter before it woke nobody, and
    # is not counted.
    assert push.payload["unread"] == 1
    assert push.payload["chatId"] == group

    reply = {
        "chatId": group,
        "clientMessageId": "r1",
        "message": "an answer",
        "replyTo": mine["messageId"],
    }
    await on_alice.call("sendMessage", reply)
    [_, again] = await webpush.wait_for(phone, 2, timeout=5)
    assert again.payload["unread"] == 2
