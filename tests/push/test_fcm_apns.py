"""FCM HTTP v1 and APNs over HTTP/2, against local fakes that check what they receive."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pigeon.bootstrap import Container
from pigeon.config import Settings
from tests.fakes.apns import KEY_ID, TEAM_ID, FakeApns
from tests.fakes.fcm import FakeFcm
from tests.gateway.conftest import Connect, Register
from tests.push.conftest import COALESCE_SECONDS
from tests.push.test_webpush import direct_chat, no_push_rows
from tests.support import bearer, eventually, mark, online

APNS_TOKEN = "a1" * 32


@pytest.fixture
async def fcm() -> AsyncIterator[FakeFcm]:
    fake = FakeFcm()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def apns(tmp_path: Path) -> AsyncIterator[FakeApns]:
    fake = FakeApns(tmp_path)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def settings(settings: Settings, fcm: FakeFcm, apns: FakeApns, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "fcm_service_account_file": fcm.service_account(tmp_path),
            "fcm_base_url": fcm.origin,
            "apns_key_file": apns.key_file,
            "apns_key_id": KEY_ID,
            "apns_team_id": TEAM_ID,
            "apns_base_url": f"https://127.0.0.1:{apns.port}",
            "apns_sandbox_url": f"https://localhost:{apns.port}",
            "push_ca_file": apns.cert_file,
        }
    )


async def put_push(client: httpx.AsyncClient, session: dict[str, Any], body: Any) -> None:
    response = await client.put(
        f"/v1/devices/{session['device_id']}/push", json=body, headers=bearer(session)
    )
    assert response.status_code == 204, response.text


async def until_unregistered(container: Container) -> None:
    await eventually(lambda: no_push_rows(container))


async def test_fcm_gets_a_v1_message_with_an_oauth_token_it_issued_and_reused(
    client: httpx.AsyncClient, connect: Connect, user: Register, fcm: FakeFcm
) -> None:
    alice, bob = await user(), await user()
    await put_push(client, bob, {"kind": "fcm", "token": "fcm-token-of-bob"})
    on_alice = await online(connect, alice)
    chat_id = await direct_chat(on_alice, bob)

    sent_at = time.monotonic()
    await mark(on_alice, chat_id, "private words")
    [first] = await fcm.wait_for(1)
    assert time.monotonic() - sent_at < 1.0
    assert first["token"] == "fcm-token-of-bob"
    assert first["data"]["chatId"] == chat_id
    assert first["data"]["senderId"] == alice["user_id"]
    assert first["data"]["type"] == "message"
    assert "private" not in str(first)

    await mark(on_alice, chat_id, "more")
    [first, second] = await fcm.wait_for(2, timeout=COALESCE_SECONDS + 5)
    assert int(second["data"]["unread"]) == int(first["data"]["unread"]) + 1
    assert second["android"]["collapse_key"] == first["android"]["collapse_key"]
    assert fcm.token_requests == 1  # cached until it expires
    assert fcm.refused == []


async def test_fcm_unregistered_token_is_removed(
    client: httpx.AsyncClient,
    connect: Connect,
    user: Register,
    fcm: FakeFcm,
    container: Container,
) -> None:
    alice, bob = await user(), await user()
    fcm.unregistered.add("stale-token")
    await put_push(client, bob, {"kind": "fcm", "token": "stale-token"})
    on_alice = await online(connect, alice)
    await mark(on_alice, await direct_chat(on_alice, bob))
    await fcm.wait_for(1)
    await until_unregistered(container)


async def test_apns_gets_an_http2_push_with_a_valid_provider_token(
    client: httpx.AsyncClient, connect: Connect, user: Register, apns: FakeApns
) -> None:
    alice, bob = await user(), await user()
    await put_push(client, bob, {"kind": "apns", "token": APNS_TOKEN, "topic": "org.pigeon.app"})
    on_alice = await online(connect, alice)
    chat_id = await direct_chat(on_alice, bob)

    sent_at = time.monotonic()
    await mark(on_alice, chat_id, "private words")
    [push] = await apns.wait_for(1)
    assert time.monotonic() - sent_at < 1.0
    assert push["token"] == APNS_TOKEN
    assert push["host"].startswith("127.0.0.1")
    assert push["headers"]["apns-topic"] == "org.pigeon.app"
    assert push["headers"]["apns-priority"] == "10"
    assert push["body"]["pigeon"]["chatId"] == chat_id
    assert push["body"]["aps"]["badge"] == push["body"]["pigeon"]["unread"]
    assert "private" not in str(push["body"])
    assert apns.refused == []


async def test_apns_sandbox_goes_to_the_sandbox_and_gone_tokens_are_removed(
    client: httpx.AsyncClient,
    connect: Connect,
    user: Register,
    apns: FakeApns,
    container: Container,
) -> None:
    alice, bob = await user(), await user()
    apns.gone.add(APNS_TOKEN)
    body = {"kind": "apns", "token": APNS_TOKEN, "topic": "org.pigeon.dev", "sandbox": True}
    await put_push(client, bob, body)
    on_alice = await online(connect, alice)
    await mark(on_alice, await direct_chat(on_alice, bob))
    [push] = await apns.wait_for(1)
    assert push["host"].startswith("localhost")
    await until_unregistered(container)
