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
