"""PUT/DELETE /v1/devices/{id}/push and GET /v1/push/vapid-public-key."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from pigeon.bootstrap import Container, build
from pigeon.config import Settings
from tests.support import FakeClock, Outbox, bearer, register

PUBLIC_ENDPOINT = "https://93.184.215.14/push/v2/abc"  # a literal public address: no DNS


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The SSRF rule as in production (the other push tests lift it for their fakes)."""
    return settings.model_copy(update={"push_allow_private_endpoints": False})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def subscription(endpoint: str = PUBLIC_ENDPOINT) -> dict[str, Any]:
    """A browser's PushSubscription as JSON, with real keys."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "kind": "webpush",
        "endpoint": endpoint,
        "expirationTime": None,
        "keys": {"p256dh": b64url(point), "auth": b64url(b"0123456789abcdef")},
    }


async def registrations(container: Container) -> list[tuple[str, str]]:
    async with container.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT device_id, kind FROM push_registrations"))
        return sorted((r[0], r[1]) for r in rows)


async def test_own_device_registers_each_kind_and_removes_it(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    alice = await register(client, outbox, "+14155550101")
    path = f"/v1/devices/{alice['device_id']}/push"
    for body in (
        subscription(),
        {"kind": "fcm", "token": "fcm-token:APA91b_x-1"},
        {"kind": "apns", "token": "ab" * 32, "topic": "org.pigeon.app", "sandbox": True},
    ):
        response = await client.put(path, json=body, headers=bearer(alice))
        assert response.status_code == 204, response.text
        assert await registrations(container) == [(alice["device_id"], body["kind"])]

    response = await client.delete(path, headers=bearer(alice))
    assert response.status_code == 204
    assert await registrations(container) == []


async def test_another_users_device_is_not_found(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    alice = await register(client, outbox, "+14155550102")
    mallory = await register(client, outbox, "+14155550103")
    for device_id in (alice["device_id"], "01JAAAAAAAAAAAAAAAAAAAAAAA", "nope"):
        path = f"/v1/devices/{device_id}/push"
        for response in (
            await client.put(path, json=subscription(), headers=bearer(mallory)),
            await client.delete(path, headers=bearer(mallory)),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "device_not_found"
    assert await registrations(container) == []


def _bad_point() -> str:
    return b64url(b"\x04" + b"\x01" * 64)  # the right length, not on the curve


BAD_SUBSCRIPTIONS = [
    ({"endpoint": "not a url"}, "invalid_push_endpoint"),
    ({"endpoint": "ftp://push.example.com/x"}, "invalid_push_endpoint"),
    ({"endpoint": "http://93.184.215.14/x"}, "push_endpoint_not_https"),
    ({"endpoint": "https://127.0.0.1/x"}, "push_endpoint_not_public"),
    ({"endpoint": "https://10.1.2.3/x"}, "push_endpoint_not_public"),
    ({"endpoint": "https://169.254.169.254/latest"}, "push_endpoint_not_public"),
    ({"endpoint": "https://[::1]/x"}, "push_endpoint_not_public"),
    ({"endpoint": "https://localhost/x"}, "push_endpoint_not_public"),
    (
        {"keys": {"p256dh": _bad_point(), "auth": b64url(b"0123456789abcdef")}},
        "invalid_push_key",
    ),
    ({"keys": {"p256dh": "!!!", "auth": b64url(b"0123456789abcdef")}}, "invalid_push_key"),
    ({"keys": {"p256dh": None, "auth": b64url(b"short")}}, "invalid_push_auth"),
    ({"kind": "carrier-pigeon"}, "invalid_request"),
    ({"surprise": 1}, "unknown_field"),
]


async def test_bad_web_push_subscriptions_are_refused_with_a_code(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    alice = await register(client, outbox, "+14155550104")
    for change, code in BAD_SUBSCRIPTIONS:
        body = subscription() | change
        if body["keys"]["p256dh"] is None:
            body["keys"]["p256dh"] = subscription()["keys"]["p256dh"]
        response = await client.put(
            f"/v1/devices/{alice['device_id']}/push", json=body, headers=bearer(alice)
        )
        assert response.status_code == 422, (change, response.text)
        assert response.json()["error"]["code"] == code, change
    assert await registrations(container) == []


async def test_bad_tokens_are_refused(client: httpx.AsyncClient, outbox: Outbox) -> None:
    alice = await register(client, outbox, "+14155550105")
    for body in (
        {"kind": "fcm", "token": ""},
        {"kind": "fcm", "token": "has spaces"},
        {"kind": "apns", "token": "zz" * 32, "topic": "org.pigeon.app"},
        {"kind": "apns", "token": "ab" * 32},
    ):
        response = await client.put(
            f"/v1/devices/{alice['device_id']}/push", json=body, headers=bearer(alice)
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"


async def test_a_registration_goes_with_its_device(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    phone = await register(client, outbox, "+14155550106")
    laptop = await register(client, outbox, "+14155550106", device="laptop")
    for device in (phone, laptop):
        response = await client.put(
            f"/v1/devices/{device['device_id']}/push", json=subscription(), headers=bearer(device)
        )
        assert response.status_code == 204

    response = await client.delete(f"/v1/devices/{laptop['device_id']}", headers=bearer(phone))
    assert response.status_code == 204
    assert await registrations(container) == [(phone["device_id"], "webpush")]


async def test_vapid_key_is_generated_once_and_kept(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    response = await client.get("/v1/push/vapid-public-key")
    assert response.status_code == 200
    key = response.json()["publicKey"]
    point = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)  # a real P-256 point

    again = build(settings, clock=clock)  # a restart on the same data dir
    try:
        assert again.push.vapid_public_key == key
    finally:
        await again.close()


async def test_configured_vapid_key_is_used(settings: Settings, clock: FakeClock) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    expected = b64url(
        private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    configured = settings.model_copy(update={"vapid_private_key": SecretStr(b64url(scalar))})
    container = build(configured, clock=clock)
    try:
        assert container.push.vapid_public_key == expected
    finally:
        await container.close()
