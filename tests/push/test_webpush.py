"""Web Push end to end: a message to a device with no live connection wakes it, once."""

from __future__ import annotations

import time
from typing import Any

import httpx
import sqlalchemy as sa

from pigeon.bootstrap import Container
from tests.fakes.webpush import FakeWebPush
from tests.gateway.conftest import Connect, Register
from tests.push.conftest import COALESCE_SECONDS
from tests.support import bearer, eventually, mark, online


async def subscribe(
    client: httpx.AsyncClient, webpush: FakeWebPush, session: dict[str, Any]
) -> dict[str, Any]:
    subscription = webpush.subscribe()
    response = await client.put(
        f"/v1/devices/{session['device_id']}/push", json=subscription, headers=bearer(session)
    )
    assert response.status_code == 204, response.text
    return subscription


async def direct_chat(sender: Any, other: dict[str, Any]) -> str:
    chat_id: str = (await sender.call("createChat", {"participants": [other["user_id"]]}))["chatId"]
    return chat_id


async def test_offline_device_is_pushed_within_a_second_without_content(
    client: httpx.AsyncClient,
    connect: Connect,
    user: Register,
    webpush: FakeWebPush,
) -> None:
    alice, bob = await user(), await user()
    phone = await subscribe(client, webpush, bob)
    vapid = (await client.get("/v1/push/vapid-public-key")).json()["publicKey"]
    on_alice = await online(connect, alice)
    chat_id = await direct_chat(on_alice, bob)

    sent_at = time.monotonic()
    await mark(on_alice, chat_id, "the secret plans")
    [push] = await webpush.wait_for(phone, 1)

    print(f"push latency, send to the push service: {(push.at - sent_at) * 1000:.1f} ms")
    assert push.at - sent_at < 1.0
    assert push.vapid_key == vapid
    assert push.payload == {
        "type": "message",
        "chatId": chat_id,
        "senderId": alice["user_id"],
        "unread": push.payload["unread"],
    }
    assert "secret" not in str(push.payload)
    assert push.headers["urgency"] == "high"
    assert push.headers["topic"] == "unread"
    assert int(push.headers["ttl"]) > 0
    assert webpush.refused == []


async def test_a_device_with_a_live_connection_is_not_pushed(
    client: httpx.AsyncClient, connect: Connect, user: Register, webpush: FakeWebPush
) -> None:
    alice, bob = await user(), await user()
    phone = await subscribe(client, webpush, bob)
    on_alice = await online(connect, alice)
    on_bob = await online(connect, bob)
    chat_id = await direct_chat(on_alice, bob)
    first = await mark(on_alice, chat_id, "while you are here")
    await on_bob.until(
        lambda f: f.get("event") == "message" and f["data"]["messageId"] == first["messageId"]
    )
    await mark(on_bob, chat_id, "seen")  # answered after bob's ack committed (same device)
    await on_bob.close()

    # Bob's phone is pushed for a message sent while it is away, and that push is
    # the first it ever got: one for the earlier message would have come before.
    await mark(on_alice, chat_id, "while you are away")
    [push] = await webpush.wait_for(phone, 1)
    assert push.payload["unread"] == 1
    assert len(webpush.of(phone)) == 1


async def test_pushes_coalesce_and_carry_the_latest_unread_count(
    client: httpx.AsyncClient, connect: Connect, user: Register, webpush: FakeWebPush
) -> None:
    alice, bob = await user(), await user()
    on_alice = await online(connect, alice)
    chat_id = await direct_chat(on_alice, bob)
    phone = await subscribe(client, webpush, bob)

    await mark(on_alice, chat_id, "one")
    [first] = await webpush.wait_for(phone, 1)
    for text in ("two", "three"):
        await mark(on_alice, chat_id, text)
    # One device's pushes go out one after another: a push for "two" alone would
    # have come before the one that covers "three".
    [first, second] = await webpush.wait_for(phone, 2, timeout=5)
    assert second.payload["unread"] == first.payload["unread"] + 2
    assert second.at - first.at >= COALESCE_SECONDS * 0.9
    assert second.headers["topic"] == first.headers["topic"]


async def no_push_rows(container: Container) -> bool:
    return await push_rows(container) == 0


async def push_rows(container: Container) -> int:
    async with container.engine.connect() as conn:
        return int(
            (await conn.execute(sa.text("SELECT count(*) FROM push_registrations"))).scalar_one()
        )


async def test_a_gone_subscription_is_removed(
    client: httpx.AsyncClient,
    connect: Connect,
    user: Register,
    webpush: FakeWebPush,
    container: Container,
) -> None:
    alice, bob = await user(), await user()
    phone = await subscribe(client, webpush, bob)
    webpush.answers[webpush.sid(phone)].append(410)
    on_alice = await online(connect, alice)
    chat_id = await direct_chat(on_alice, bob)
    await mark(on_alice, chat_id)

    [push] = await webpush.wait_for(phone, 1)
    assert push.answered == 410
    await eventually(lambda: no_push_rows(container))
    metrics = (await client.get("/metrics")).text
    assert 'pigeon_push_total{outcome="removed",provider="webpush"} 1.0' in metrics


async def test_a_503_is_retried_until_it_is_accepted(
    client: httpx.AsyncClient,
    connect: Connect,
    user: Register,
    webpush: FakeWebPush,
    container: Container,
) -> None:
    alice, bob = await user(), await user()
    phone = await subscribe(client, webpush, bob)
    webpush.answers[webpush.sid(phone)].extend([503, 503])
    on_alice = await online(connect, alice)
    chat_id = await direct_chat(on_alice, bob)
    await mark(on_alice, chat_id)

    pushes = await webpush.wait_for(phone, 3)
    assert [p.answered for p in pushes] == [503, 503, 201]
    assert pushes[0].payload == pushes[2].payload
    metrics = (await client.get("/metrics")).text
    assert 'pigeon_push_total{outcome="retried",provider="webpush"} 2.0' in metrics
    assert await push_rows(container) == 1
