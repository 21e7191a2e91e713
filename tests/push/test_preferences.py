"""Notification preferences and muted chats: what they change in the pushes a device gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from pigeon.bootstrap import Container
from tests.fakes.webpush import FakeWebPush
from tests.gateway.conftest import Connect, Register
from tests.live import WsClient
from tests.push.test_webpush import direct_chat, subscribe
from tests.support import bearer, eventually, mark, online


async def test_preferences_are_shared_by_my_devices(
    client: httpx.AsyncClient, user: Register
) -> None:
    phone = await user("+14155550301")
    laptop = await user("+14155550301", device="laptop")
    response = await client.get("/v1/me/notifications", headers=bearer(phone))
    assert response.status_code == 200
    assert response.json() == {"push": True, "previews": False, "mutedChats": []}

    response = await client.patch(
        "/v1/me/notifications", json={"previews": True}, headers=bearer(phone)
    )
    assert response.json() == {"push": True, "previews": True, "mutedChats": []}
    response = await client.get("/v1/me/notifications", headers=bearer(laptop))
    assert response.json() == {"push": True, "previews": True, "mutedChats": []}

    for bad in ({"push": "yes please"}, {"sound": True}):
        response = await client.patch("/v1/me/notifications", json=bad, headers=bearer(phone))
        assert response.status_code == 422


async def test_mutes_for_8_hours_a_week_or_always_and_only_in_my_chats(
    client: httpx.AsyncClient, connect: Connect, user: Register
) -> None:
    alice, bob, mallory = await user(), await user(), await user()
    on_alice = await online(connect, alice)
    chat_id = await direct_chat(on_alice, bob)
    path = f"/v1/chats/{chat_id}/mute"

    before = datetime.now(UTC)
    response = await client.put(path, json={"duration": "8h"}, headers=bearer(bob))
    assert response.status_code == 200, response.text
    until = datetime.fromisoformat(response.json()["mutedUntil"])
    assert before + timedelta(hours=8) <= until <= datetime.now(UTC) + timedelta(hours=8)
    response = await client.put(path, json={"duration": "1w"}, headers=bearer(bob))
    until = datetime.fromisoformat(response.json()["mutedUntil"])
    assert until >= before + timedelta(days=7)
    response = await client.put(path, json={"duration": "always"}, headers=bearer(bob))
    assert response.json() == {"chatId": chat_id, "mutedUntil": None}
    mine = (await client.get("/v1/me/notifications", headers=bearer(bob))).json()
    assert mine["mutedChats"] == [{"chatId": chat_id, "mutedUntil": None}]
    theirs = (await client.get("/v1/me/notifications", headers=bearer(alice))).json()
    assert theirs["mutedChats"] == []

    response = await client.put(path, json={"duration": "forever"}, headers=bearer(bob))
    assert response.status_code == 422
    for other in (path, "/v1/chats/01JAAAAAAAAAAAAAAAAAAAAAAA/mute", "/v1/chats/x/mute"):
        response = await client.put(other, json={"duration": "8h"}, headers=bearer(mallory))
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "chat_not_found"

    response = await client.delete(path, headers=bearer(bob))
    assert response.status_code == 204
    mine = (await client.get("/v1/me/notifications", headers=bearer(bob))).json()
    assert mine["mutedChats"] == []


async def quiet(connect: Connect, session: dict[str, Any], chat_id: str) -> None:
    """Connect the device, take everything queued for it, and go offline again."""
    ws: WsClient = await online(connect, session)
    await mark(ws, chat_id, "seen")  # answered after its acks committed (same device)
    await ws.close()


async def test_a_muted_chat_sends_no_push_and_counts_no_unread(
    client: httpx.AsyncClient, connect: Connect, user: Register, webpush: FakeWebPush
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    on_alice = await online(connect, alice)
    noisy = await direct_chat(on_alice, bob)
    group = (
        await on_alice.call(
            "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "g"}
        )
    )["chatId"]
    await quiet(connect, bob, noisy)
    phone = await subscribe(client, webpush, bob)
    response = await client.put(
        f"/v1/chats/{noisy}/mute", json={"duration": "8h"}, headers=bearer(bob)
    )
    assert response.status_code == 200

    await mark(on_alice, noisy, "muted")
    await mark(on_alice, group, "not muted")
    # The first push bob's phone gets is for the group: one for the muted chat
    # would have come before it (one device's pushes go out in order).
    [push] = await webpush.wait_for(phone, 1)
    assert push.payload["chatId"] == group
    assert push.payload["unread"] == 1


async def metric_shows(client: httpx.AsyncClient, line: str) -> bool:
    return line in (await client.get("/metrics")).text


async def test_pushes_off_means_none_and_previews_name_the_sender(
    client: httpx.AsyncClient, connect: Connect, user: Register, webpush: FakeWebPush
) -> None:
    alice, bob = await user(), await user()
    await client.patch("/v1/me", json={"name": "Alice Liddell"}, headers=bearer(alice))
    on_alice = await online(connect, alice)
    chat_id = await direct_chat(on_alice, bob)
    await quiet(connect, bob, chat_id)
    phone = await subscribe(client, webpush, bob)
    await client.patch("/v1/me/notifications", json={"push": False}, headers=bearer(bob))

    await mark(on_alice, chat_id, "while pushes are off")
    suppressed = 'pigeon_push_total{outcome="suppressed",provider="webpush"} 1.0'
    await eventually(lambda: metric_shows(client, suppressed))  # looked at it, sent nothing
    response = await client.patch(
        "/v1/me/notifications", json={"push": True, "previews": True}, headers=bearer(bob)
    )
    assert response.json()["push"] is True
    await mark(on_alice, chat_id, "after they are on")
    [push] = await webpush.wait_for(phone, 1)
    # One push, sent after pushes came back on: it counts both messages.
    assert push.payload["unread"] == 2
    assert push.payload["senderName"] == "Alice Liddell"
    assert "pushes" not in str(push.payload)


async def test_a_mute_set_over_the_socket_is_seen_by_my_other_devices_and_purged_when_i_leave(
    client: httpx.AsyncClient, connect: Connect, user: Register, container: Container
) -> None:
    alice = await user()
    bob_phone = await user("+14155550311")
    bob_laptop = await user("+14155550311", device="laptop")
    on_alice = await online(connect, alice)
    group = (
        await on_alice.call("createChat", {"participants": [bob_phone["user_id"]], "name": "g"})
    )["chatId"]
    on_phone = await online(connect, bob_phone)

    answer = await on_phone.call("muteChat", {"chatId": group, "duration": "always"})
    assert answer == {"chatId": group, "muted": True, "mutedUntil": None}
    seen = (await client.get("/v1/me/notifications", headers=bearer(bob_laptop))).json()
    assert seen["mutedChats"] == [{"chatId": group, "mutedUntil": None}]
    refused = await on_phone.request(
        "muteChat", {"chatId": "01JAAAAAAAAAAAAAAAAAAAAAAA", "duration": "8h"}
    )
    assert refused["error"]["code"] == "chat_not_found"

    await on_phone.call(
        "modifyChatParticipants",
        {"chatId": group, "userId": bob_phone["user_id"], "operation": "REMOVE"},
    )
    assert await container.notifications.purge_expired() == {"mutes": 1}
    seen = (await client.get("/v1/me/notifications", headers=bearer(bob_laptop))).json()
    assert seen["mutedChats"] == []
