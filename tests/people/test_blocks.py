"""Blocking, from the outside: a blocked user's 1:1 messages are accepted and never
delivered, they lose sight of the blocker, and cannot add the blocker to groups, while
groups both are in keep working."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway.conftest import Connect, Register
from tests.live import WsClient
from tests.support import bearer, before_message, mark, of_kind, online

ALICE = "+14155550111"


async def block(client: httpx.AsyncClient, session: dict[str, Any], user_id: str) -> None:
    response = await client.put(f"/v1/blocks/{user_id}", headers=bearer(session))
    assert response.status_code == 204, response.text


def texts(frames: list[dict[str, Any]], chat_id: str) -> list[str]:
    return [
        f["data"]["message"] for f in of_kind(frames, "message") if f["data"]["chatId"] == chat_id
    ]


async def until_marker(observer: WsClient, sender: WsClient, group_id: str) -> list[dict[str, Any]]:
    """Everything queued for ``observer`` before a marker ``sender`` sends to the group now."""
    sent = await mark(sender, group_id)
    return await before_message(observer, sent["messageId"])


async def test_a_blocked_users_messages_are_accepted_and_never_delivered(
    user: Register, connect: Connect, client: httpx.AsyncClient
) -> None:
    alice, bob, carol = await user(ALICE), await user(), await user()
    a, b, c = [await online(connect, s) for s in (alice, bob, carol)]
    direct = (await b.call("createChat", {"participants": [alice["user_id"]]}))["chatId"]
    group = (
        await c.call(
            "createChat", {"participants": [alice["user_id"], bob["user_id"]], "name": "Trip"}
        )
    )["chatId"]
    await before_message(a, (await mark(c, group, "welcome"))["messageId"])

    await block(client, alice, bob["user_id"])
    listed = (await client.get("/v1/blocks", headers=bearer(alice))).json()
    assert [entry["userId"] for entry in listed["blocks"]] == [bob["user_id"]]

    # Bob's send is answered as usual (one tick), and never reaches Alice.
    sent = await b.call(
        "sendMessage", {"chatId": direct, "clientMessageId": "hidden", "message": "hidden"}
    )
    assert sent["seq"] >= 1
    # In the group they share, Bob's messages still reach her.
    await b.call("sendMessage", {"chatId": group, "clientMessageId": "g1", "message": "in group"})
    frames = await until_marker(a, c, group)
    assert texts(frames, direct) == []
    assert texts(frames, group) == ["in group"]
    # No delivered receipt ever comes back to Bob for the hidden message.
    assert [
        f
        for f in of_kind(await until_marker(b, c, group), "receipt")
        if f["data"]["chatId"] == direct
    ] == []

    # Unblocking does not deliver what was sent meanwhile; new messages flow again.
    response = await client.delete(f"/v1/blocks/{bob['user_id']}", headers=bearer(alice))
    assert response.status_code == 204
    assert (await client.get("/v1/blocks", headers=bearer(alice))).json() == {"blocks": []}
    after = await b.call(
        "sendMessage", {"chatId": direct, "clientMessageId": "after", "message": "after"}
    )
    frames = await before_message(a, after["messageId"])
    assert texts(frames, direct) == []
    # A device that connects now finds nothing of it in its queue either.
    fresh = await connect(await user(ALICE, device="tablet"))
    backlog = await fresh.until(lambda f: f.get("event") == "drained")
    assert "hidden" not in texts(backlog, direct)


async def test_a_blocked_user_loses_sight_of_the_blocker_and_cannot_add_them(
    user: Register, connect: Connect, client: httpx.AsyncClient
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    response = await client.patch("/v1/me", json={"about": "busy"}, headers=bearer(alice))
    assert response.status_code == 200
    b, c = await online(connect, bob), await online(connect, carol)
    direct = (await b.call("createChat", {"participants": [alice["user_id"]]}))["chatId"]
    await c.call("createChat", {"participants": [alice["user_id"]]})
    await block(client, alice, bob["user_id"])

    # Profile: the about is gone for Bob, there for Carol.
    seen_by_bob = await client.get(f"/v1/users/{alice['user_id']}", headers=bearer(bob))
    seen_by_carol = await client.get(f"/v1/users/{alice['user_id']}", headers=bearer(carol))
    assert seen_by_bob.json()["about"] == ""
    assert seen_by_carol.json()["about"] == "busy"

    # Presence: Alice comes online; Carol hears it, Bob does not, nor can he ask.
    a = await online(connect, alice)
    assert (await c.next_event("presence"))["data"]["userId"] == alice["user_id"]
    assert of_kind(await b.ping_barrier(), "presence") == []
    assert await b.call("getPresence", {"userIds": [alice["user_id"]]}) == {"presence": []}
    assert len((await c.call("getPresence", {"userIds": [alice["user_id"]]}))["presence"]) == 1

    # Typing in the 1:1 chat does not reach her.
    await b.call("typing", {"chatId": direct, "state": "composing"})
    assert of_kind(await a.ping_barrier(), "typing") == []

    # He cannot put her in a group, new or existing.
    refused = await b.request(
        "createChat", {"participants": [alice["user_id"], carol["user_id"]], "name": "G"}
    )
    assert refused["ok"] is False
    assert refused["error"]["code"] == "group_add_not_allowed"
    group = (await b.call("createChat", {"participants": [carol["user_id"]], "name": "G"}))[
        "chatId"
    ]
    add_alice = {"chatId": group, "userId": alice["user_id"], "operation": "ADD"}
    refused = await b.request("modifyChatParticipants", add_alice)
    assert refused["error"]["code"] == "group_add_not_allowed"
    # Carol, a member he made admin, can.
    await b.call("setRole", {"chatId": group, "userId": carol["user_id"], "role": "admin"})
    await c.call("modifyChatParticipants", add_alice)


async def test_block_bad_input(user: Register, client: httpx.AsyncClient) -> None:
    alice = await user()
    me = await client.put(f"/v1/blocks/{alice['user_id']}", headers=bearer(alice))
    assert me.status_code == 400
    assert me.json()["error"]["code"] == "cannot_block_self"
    for bad in ("01JQ80G5H6J7K8M9N0P1Q2R3S4", "not-an-id"):
        response = await client.put(f"/v1/blocks/{bad}", headers=bearer(alice))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "user_not_found"
    assert (await client.put(f"/v1/blocks/{alice['user_id']}")).status_code == 401
