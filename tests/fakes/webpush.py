"""A local Web Push service that checks what it receives, as a browser's push service would.

Each subscription it hands out has a real P-256 key pair and auth secret. A
push must carry a VAPID ``Authorization`` (RFC 8292) whose ES256 JWT verifies
with the key in ``k`` and names this service's origin as ``aud``, and a body
that decrypts (RFC 8291, aes128gcm) with the subscription's private key: the
fake keeps the plaintext for the test. It answers 201, or what the test queued
for a subscription (410, or 503 then 201, say). Served on 127.0.0.1 over plain
HTTP, so the server under test needs PIGEON_PUSH_ALLOW_PRIVATE_ENDPOINTS.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.servers import HttpFake


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_es256(token: str, public_point: bytes) -> dict[str, Any]:
    """The JWT's claims, if its ES256 signature verifies with the P-256 point."""
    header, claims, signature = token.split(".")
    assert json.loads(unb64url(header))["alg"] == "ES256"
    raw = unb64url(signature)
    assert len(raw) == 64, "a JWS ES256 signature is r || s"
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_point)
    key.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    decoded: dict[str, Any] = json.loads(unb64url(claims))
    return decoded


@dataclass
class Push:
    subscription: str
    payload: dict[str, Any]
    headers: dict[str, str]
    vapid_key: str
    at: float  # time.monotonic()
    answered: int


@dataclass
class _Subscription:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes


class FakeWebPush:
    def __init__(self) -> None:
        self.pushes: list[Push] = []
        self.refused: list[str] = []  # why a request was not a valid push
        self.answers: dict[str, deque[int]] = defaultdict(deque)
        self.retry_after = "0"  # sent with every 429 and 503
        self._subscriptions: dict[str, _Subscription] = {}
        self._arrived = asyncio.Condition()
        self._http = HttpFake(
            Starlette(routes=[Route("/push/{sid}", self._push, methods=["POST"])])
        )

    @property
    def origin(self) -> str:
        return self._http.origin

    def subscribe(self) -> dict[str, Any]:
        """A new subscription, as ``PushSubscription.toJSON()`` (plus Pigeon's ``kind``)."""
        sid = b64url(os.urandom(9))
        private = ec.generate_private_key(ec.SECP256R1())
        self._subscriptions[sid] = _Subscription(private, os.urandom(16))
        point = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "kind": "webpush",
            "endpoint": f"{self.origin}/push/{sid}",
            "keys": {"p256dh": b64url(point), "auth": b64url(self._subscriptions[sid].auth)},
        }

    @staticmethod
    def sid(subscription: dict[str, Any]) -> str:
        return str(subscription["endpoint"].rsplit("/", 1)[1])

    def of(self, subscription: dict[str, Any]) -> list[Push]:
        sid = self.sid(subscription)
        return [push for push in self.pushes if push.subscription == sid]

    async def wait_for(
        self, subscription: dict[str, Any], count: int, timeout: float = 5
    ) -> list[Push]:
        """The subscription's first ``count`` pushes (waiting for them to arrive)."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.of(subscription)) >= count)
        return self.of(subscription)[:count]

    async def _push(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        subscription = self._subscriptions.get(sid)
        if subscription is None:
            return Response(status_code=404)
        body = await request.body()
        try:
            scheme, _, params = request.headers["authorization"].partition(" ")
            assert scheme == "vapid", scheme
            fields = dict(part.strip().split("=", 1) for part in params.split(","))
            claims = verify_es256(fields["t"], unb64url(fields["k"]))
            assert claims["aud"] == self.origin, claims
            assert 0 < claims["exp"] - time.time() <= 24 * 3600, claims
            assert claims["sub"].startswith(("mailto:", "https:")), claims
            assert request.headers["content-encoding"] == "aes128gcm"
            plaintext = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth,
                version="aes128gcm",
            )
        except (AssertionError, KeyError, ValueError, InvalidSignature) as exc:
            self.refused.append(f"{type(exc).__name__}: {exc}")
            return Response(status_code=400)
        queued = self.answers[sid]
        status = queued.popleft() if queued else 201
        async with self._arrived:
            self.pushes.append(
                Push(
                    subscription=sid,
                    payload=json.loads(plaintext),
                    headers=dict(request.headers),
                    vapid_key=fields["k"],
                    at=time.monotonic(),
                    answered=status,
                )
            )
            self._arrived.notify_all()
        headers = {"Retry-After": self.retry_after} if status in (429, 503) else None
        return Response(status_code=status, headers=headers)

    async def start(self) -> None:
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()
