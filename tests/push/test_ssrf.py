"""The SSRF rule at send time, and Retry-After, against the local Web Push service."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pigeon.domain.push import InvalidPushRegistration, PushKind, PushNotice, PushRegistration
from pigeon.push.endpoints import EndpointGuard
from pigeon.push.vapid import load_vapid_keys
from pigeon.push.webpush import WebPushSender
from pigeon.services.ports import PushOutcome
from tests.fakes.webpush import FakeWebPush
from tests.gateway.conftest import Connect, Register
from tests.push.test_webpush import direct_chat, subscribe
from tests.support import mark, online

NOTICE = PushNotice(type="message", chat_id="c", sender_id="s", unread=1, up_to_seq=1)


async def test_an_endpoint_that_is_private_at_send_time_is_not_contacted(
    webpush: FakeWebPush, tmp_path: Path
) -> None:
    """A name that resolved to a public address at registration may point inside now."""
    subscription = webpush.subscribe()
    keys = subscription["keys"]
    registration = PushRegistration(
        device_id="d",
        user_id="u",
        kind=PushKind.WEBPUSH,
        created_at=datetime.now(UTC),
        endpoint=subscription["endpoint"].replace("http://", "https://"),
        p256dh=keys["p256dh"],
        auth=keys["auth"],
    )
    vapid = load_vapid_keys(None, tmp_path, "mailto:ops@example.com")
    async with httpx.AsyncClient() as client:
        sender = WebPushSender(client, vapid, EndpointGuard(allow_private=False))
        result = await sender.send(registration, NOTICE)
    assert result.outcome is PushOutcome.DROPPED
    assert result.detail == "push_endpoint_not_public"
    assert webpush.pushes == []


@pytest.mark.parametrize(
    "endpoint",
    ["https://[::ffff:127.0.0.1]/x", "https://[fd00::1]/x", "https://100.64.0.1/x"],
)
async def test_disguised_private_addresses_are_not_public(endpoint: str) -> None:
    with pytest.raises(InvalidPushRegistration) as refused:
        await EndpointGuard(allow_private=False).check(endpoint)
    assert refused.value.code == "push_endpoint_not_public"


async def test_retry_after_is_respected(
    client: httpx.AsyncClient, connect: Connect, user: Register, webpush: FakeWebPush
) -> None:
    alice, bob = await user(), await user()
    phone = await subscribe(client, webpush, bob)
    webpush.answers[webpush.sid(phone)].append(429)
    webpush.retry_after = "1"
    on_alice = await online(connect, alice)
    await mark(on_alice, await direct_chat(on_alice, bob))

    refused, accepted = await webpush.wait_for(phone, 2)
    assert (refused.answered, accepted.answered) == (429, 201)
    # The backoff alone (PIGEON_PUSH_RETRY_BASE_SECONDS 0.05 here) would be far sooner.
    assert accepted.at - refused.at >= 0.95
