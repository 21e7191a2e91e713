"""Broadcast lists: private lists, and one send that becomes a 1:1 message per recipient."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.domain.ids import new_id
from pigeon.storage.schema import contacts
from tests.gateway.conftest import Connect, Register
from tests.support import bearer, before_message, mark, online, settle_in_new_group


async def add_contacts(
    container: Container, owner: dict[str, Any], *people: dict[str, Any]
) -> None:
    """``owner`` has ``people`` in their address book (the contacts issue's table)."""
    async with container.engine.begin() as conn:
        await conn.execute(
            contacts.insert(),
            [
                {
                    "owner_id": owner["user_id"],
                    "contact_id": p["user_id"],
                    "added_at": datetime.now(UTC),
                }
                for p in people
            ],
        )


async def create_list(
    client: httpx.AsyncClient, owner: dict[str, Any], recipients: list[str], name: str = "news"
) -> httpx.Response:
    return await client.post(
        "/v1/broadcast-lists",
        json={"name": name, "recipients": recipients},
        headers=bearer(owner),
    )


async def new_list(
    client: httpx.AsyncClient, owner: dict[str, Any], *people: dict[str, Any]
) -> str:
    response = await create_list(client, owner, [p["user_id"] for p in people])
    assert response.status_code == 201, response.text
    list_id: str = response.json()["id"]
    return list_id


async def test_a_broadcast_reaches_each_recipient_who_has_the_sender_in_their_1_1_chat(
    client: httpx.AsyncClient, user: Register, connect: Connect, container: Container
) -> None:
    alice, bob, carol, dave = [await user() for _ in range(4)]
    await add_contacts(container, bob, alice)
    await add_contacts(container, carol, alice)  # dave does not have alice: he is skipped
    a, b, d = [await online(connect, s) for s in (alice, bob, dave)]
    with_bob = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    list_id = await new_list(client, alice, bob, carol, dave)

    cmid = new_id()
    send = {"listId": list_id, "clientMessageId": cmid, "message": "party on friday"}
    answer = await a.call("sendMessage", send)
    assert (answer["listId"], answer["delivered"], answer["skipped"]) == (list_id, 2, 1)
    copies = {copy["userId"]: copy for copy in answer["messages"]}
    assert set(copies) == {bob["user_id"], carol["user_id"]}
    assert copies[bob["user_id"]]["chatId"] == with_bob  # the existing 1:1 chat

    # Bob gets it as an ordinary 1:1 message from alice.
    event = (await b.next_event("message"))["data"]
    assert (event["chatId"], event["senderId"], event["message"]) == (
        with_bob,
        alice["user_id"],
        "party on friday",
    )
    # Carol was offline: she finds it in a new 1:1 chat with alice when she comes back.
    c = await connect(carol)
    backlog = await c.until(lambda frame: frame.get("event") == "drained")
    [message] = [f["data"] for f in backlog if f["event"] == "message"]
    assert message["chatId"] == copies[carol["user_id"]]["chatId"]
    assert message["message"] == "party on friday"
    chat = await c.call("getChat", {"chatId": message["chatId"]})
    assert chat["kind"] == "direct"
    assert {m["userId"] for m in chat["members"]} == {alice["user_id"], carol["user_id"]}
    # Dave gets nothing, not even a chat.
    frames = await settle_in_new_group(d, dave["user_id"], b)
    assert [f for f in frames if f["event"] == "message"] == []
    assert all(c["kind"] == "group" for c in (await d.call("getChats"))["chats"])

    # A retry stores nothing twice: the same answer, marked as a repeat; bob sees no copy.
    again = await a.call("sendMessage", send)
    assert again["delivered"] == 2
    assert all(copy["duplicate"] for copy in again["messages"])
    frames = await before_message(b, (await mark(a, with_bob))["messageId"])
    assert [f for f in frames if f["event"] == "message" and f["data"]["chatId"] == with_bob] == []


async def test_lists_are_private_to_their_owner(
    client: httpx.AsyncClient, user: Register, connect: Connect, container: Container
) -> None:
    alice, bob = await user(), await user()
    await add_contacts(container, bob, alice)
    list_id = await new_list(client, alice, bob)
    assert (await client.get("/v1/broadcast-lists", headers=bearer(bob))).json() == {"lists": []}
    path = f"/v1/broadcast-lists/{list_id}"
    for response in (
        await client.get(path, headers=bearer(bob)),
        await client.patch(path, json={"name": "mine"}, headers=bearer(bob)),
        await client.delete(path, headers=bearer(bob)),
        await client.get(f"/v1/broadcast-lists/{new_id()}", headers=bearer(alice)),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "broadcast_list_not_found"
    b = await online(connect, bob)
    refused = await b.request(
        "sendMessage", {"listId": list_id, "clientMessageId": "x", "message": "hi"}
    )
    assert refused["error"]["code"] == "broadcast_list_not_found"
    # Alice's list is untouched.
    got = await client.get(path, headers=bearer(alice))
    assert got.json()["name"] == "news"
    assert got.json()["recipients"] == [bob["user_id"]]


async def test_creating_reading_changing_and_deleting_a_list(
    client: httpx.AsyncClient, user: Register
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    list_id = await new_list(client, alice, bob)
    path = f"/v1/broadcast-lists/{list_id}"
    changed = await client.patch(
        path, json={"name": "family", "recipients": [carol["user_id"]]}, headers=bearer(alice)
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["recipients"]) == ("family", [carol["user_id"]])
    listed = (await client.get("/v1/broadcast-lists", headers=bearer(alice))).json()["lists"]
    assert [(x["id"], x["name"]) for x in listed] == [(list_id, "family")]
    assert (await client.delete(path, headers=bearer(alice))).status_code == 204
    assert (await client.get(path, headers=bearer(alice))).status_code == 404


async def test_bad_lists_and_bad_sends_are_refused_and_change_nothing(
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    container: Container,
) -> None:
    alice, bob = await user(), await user()
    many = [new_id() for _ in range(container.settings.broadcast_max_recipients + 1)]
    cases = [
        (many, 400, "too_many_recipients"),
        ([bob["user_id"], new_id()], 404, "user_not_found"),
        ([alice["user_id"], bob["user_id"]], 400, "invalid_recipients"),
        ([], 422, "invalid_request"),
    ]
    for recipients, status, code in cases:
        response = await create_list(client, alice, recipients)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    assert (await client.get("/v1/broadcast-lists", headers=bearer(alice))).json() == {"lists": []}

    list_id = await new_list(client, alice, bob)
    path = f"/v1/broadcast-lists/{list_id}"
    response = await client.patch(path, json={"recipients": many}, headers=bearer(alice))
    assert response.json()["error"]["code"] == "too_many_recipients"
    assert (await client.get(path, headers=bearer(alice))).json()["recipients"] == [bob["user_id"]]

    a = await online(connect, alice)
    chat = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    for data, code in [
        ({"listId": list_id, "chatId": chat, "message": "x"}, "invalid_frame"),
        ({"message": "x"}, "invalid_frame"),
        ({"listId": list_id, "message": "x", "replyTo": new_id()}, "invalid_frame"),
        ({"listId": list_id, "message": "  "}, "empty_message"),
    ]:
        answer = await a.request("sendMessage", {"clientMessageId": new_id(), **data})
        assert answer["error"]["code"] == code, answer
    # Bob (who has not added alice) is simply skipped.
    answer = await a.call(
        "sendMessage", {"listId": list_id, "clientMessageId": new_id(), "message": "hi"}
    )
    assert (answer["delivered"], answer["skipped"], answer["messages"]) == (0, 1, [])
    async with container.engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT count(*) FROM messages")) == 0
