"""Web Push (RFC 8030): a VAPID-signed (RFC 8292), aes128gcm-encrypted (RFC 8291) POST."""

from __future__ import annotations

import json
import os

import http_ece
import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from pigeon.domain.push import InvalidPushRegistration, PushNotice, PushRegistration, b64url_decode
from pigeon.push.endpoints import EndpointGuard
from pigeon.push.results import classify, unreachable
from pigeon.push.vapid import VapidKeys
from pigeon.services.ports import PushOutcome, PushResult

TTL_SECONDS = 24 * 3600  # a push the browser does not collect within a day is stale
TOPIC = "unread"  # one pending push per subscription: a newer one replaces it


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """The body RFC 8291 asks for: a fresh sender key per push, salt and key id in the header."""
    return bytes(
        http_ece.encrypt(
            payload,
            salt=os.urandom(16),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            dh=b64url_decode(p256dh),
            auth_secret=b64url_decode(auth),
            version="aes128gcm",
        )
    )


class WebPushSender:
    def __init__(self, client: httpx.AsyncClient, vapid: VapidKeys, guard: EndpointGuard) -> None:
        self._client = client
        self._vapid = vapid
        self._guard = guard

    async def send(self, registration: PushRegistration, notice: PushNotice) -> PushResult:
        try:
            # Again at send time: the name may resolve elsewhere now (DNS rebinding).
            addresses = await self._guard.addresses(registration.endpoint)
        except InvalidPushRegistration as exc:
            return PushResult(PushOutcome.DROPPED, detail=exc.code)
        url = httpx.URL(registration.endpoint)
        headers = {
            "Authorization": self._vapid.authorization(f"{url.scheme}://{url.netloc.decode()}"),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(TTL_SECONDS),
            "Urgency": "high",
            "Topic": TOPIC,
        }
        extensions = {}
        if addresses:  # connect to the address just checked, still verifying the name's cert
            headers["Host"] = url.netloc.decode()
            extensions["sni_hostname"] = url.host
            url = url.copy_with(host=addresses[0])
        body = encrypt(
            json.dumps(notice.payload()).encode(), registration.p256dh, registration.auth
        )
        try:
            response = await self._client.post(
                url, content=body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as exc:
            return unreachable(exc)
        return classify(response)
