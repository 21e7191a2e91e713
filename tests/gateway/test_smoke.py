from __future__ import annotations

from tests.gateway.conftest import Connect, Register


async def test_one_to_one_message_is_delivered_and_receipted(
    user: Register, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    a = await connect(alice)
    b = await connect(bob)
    await a.next_event("drained")
    await b.next_event("drained")
    chat = await a.call("createChat", {"participants": [bob["user_id"]]})
    sent = await a.call(
        "sendMessage", {"chatId": chat["chatId"], "clientMessageId": "m1", "message": "hello"}
    )
    assert sent["status"] == "SUCCESS"
    assert sent["seq"] == 1
    event = await b.next_event("message")
    assert event["data"]["message"] == "hello"
    assert event["data"]["senderId"] == alice["user_id"]
    receipt = await a.next_event("receipt")
    assert receipt["data"]["type"] == "delivered"
    assert receipt["data"]["upToSeq"] == 1


async def test_catch_up_carries_each_message_s_chat_seq(user: Register, connect: Connect) -> None:
    # The inbox seq (per device) and the message seq (per chat) differ once a
    # device has events from several chats; the replay must not mix them up.
    alice, bob, carol = await user(), await user(), await user()
    a = await connect(alice)
    group = await a.call(
        "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "g"}
    )
    direct = await a.call("createChat", {"participants": [bob["user_id"]]})
    sent = await a.call(
        "sendMessage", {"chatId": direct["chatId"], "clientMessageId": "x", "message": "hi"}
    )
    assert sent["seq"] == 1
    b = await connect(bob)  # offline until now: everything comes from the database
    created = await b.next_event("message")
    assert (created["data"]["chatId"], created["data"]["seq"]) == (group["chatId"], 1)
    hello = await b.next_event("message")
    assert (hello["data"]["chatId"], hello["data"]["seq"]) == (direct["chatId"], 1)
    assert hello["data"]["inboxSeq"] == 2
