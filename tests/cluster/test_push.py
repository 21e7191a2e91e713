"""Push across nodes: it does not matter where the sender and the device's last socket were."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.conftest import StartNode
from tests.fakes.webpush import FakeWebPush
from tests.support import Outbox, bearer, mark, register


@pytest.fixture
async def webpush() -> AsyncIterator[FakeWebPush]:
    fake = FakeWebPush()
    await fake.start()
    yield fake
    await fake.stop()


async def test_the_device_last_seen_on_one_node_is_pushed_for_a_send_on_the_other(
    start_node: StartNode, tmp_path: Path, webpush: FakeWebPush
) -> None:
    a = await start_node("a", push_allow_private_endpoints=True)
    b = await start_node("b", push_allow_private_endpoints=True)
    outbox = Outbox(tmp_path / "a" / "sms-outbox.jsonl")
    alice = await register(a.http, outbox, "+14155557001")
    bob = await register(a.http, outbox, "+14155557002")
    phone = webpush.subscribe()
    response = await b.http.put(
        f"/v1/devices/{bob['device_id']}/push", json=phone, headers=bearer(bob)
    )
    assert response.status_code == 204

    on_a = await a.connect(alice)
    on_b = await b.connect(bob)
    chat_id = (await on_a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]
    here = await mark(on_a, chat_id, "while bob is on node b")
    await on_b.until(
        lambda f: f.get("event") == "message" and f["data"]["messageId"] == here["messageId"]
    )
    await mark(on_b, chat_id, "seen")  # answered after bob's ack committed (same device)
    await on_b.close()

    sent_at = time.monotonic()
    await mark(on_a, chat_id, "while bob is away")
    [push] = await webpush.wait_for(phone, 1)
    # The first push bob's phone ever got is for the message sent while it was away.
    assert push.at - sent_at < 1.0
    assert push.payload["unread"] == 1
    assert push.payload["chatId"] == chat_id
