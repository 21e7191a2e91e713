"""APNs over HTTP/2, with an ES256 provider token (key id, team id, .p8 key)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pigeon.domain.push import PushNotice, PushRegistration
from pigeon.push.jwt import es256
from pigeon.push.results import classify, unreachable
from pigeon.services.ports import PushOutcome, PushResult

# Apple refuses tokens older than an hour and ones renewed more than every 20 minutes.
TOKEN_LIFETIME_SECONDS = 50 * 60
COLLAPSE_ID = "unread"
EXPIRATION_SECONDS = 24 * 3600
GONE_REASONS = {"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"}
STALE_TOKEN_REASONS = {"ExpiredProviderToken", "InvalidProviderToken"}


def load_p8(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an APNs (P-256) key")
    return key


class ApnsSender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        team_id: str,
        base_url: str,
        sandbox_url: str,
    ) -> None:
        self._client = client  # HTTP/2: APNs speaks nothing else
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._base_url = base_url.rstrip("/")
        self._sandbox_url = sandbox_url.rstrip("/")
        self._token: tuple[str, float] | None = None

    def _provider_token(self) -> str:
        if self._token is None or self._token[1] <= time.monotonic():
            jwt = es256(self._key, {"iss": self._team_id, "iat": int(time.time())}, self._key_id)
            self._token = (jwt, time.monotonic() + TOKEN_LIFETIME_SECONDS)
        return self._token[0]

    async def send(self, registration: PushRegistration, notice: PushNotice) -> PushResult:
        base = self._sandbox_url if registration.sandbox else self._base_url
        headers = {
            "authorization": f"bearer {self._provider_token()}",
            "apns-topic": registration.topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            "apns-collapse-id": COLLAPSE_ID,
            "apns-expiration": str(int(time.time()) + EXPIRATION_SECONDS),
        }
        try:
            response = await self._client.post(
                f"{base}/3/device/{registration.token}", json=_body(notice), headers=headers
            )
        except httpx.HTTPError as exc:
            return unreachable(exc)
        reason = _reason(response)
        if response.status_code == 410 or reason in GONE_REASONS:
            return PushResult(PushOutcome.GONE, detail=reason or "410")
        if reason in STALE_TOKEN_REASONS:
            self._token = None
            return PushResult(PushOutcome.RETRY, detail=reason)
        return classify(response, gone=(), detail=reason)


def _body(notice: PushNotice) -> dict[str, Any]:
    """No message text: a localizable alert the app fills in, and the unread badge."""
    return {
        "aps": {
            "alert": {"loc-key": "PIGEON_NEW_MESSAGE"},
            "badge": notice.unread,
            "sound": "default",
            "mutable-content": 1,
        },
        "pigeon": notice.payload(),
    }


def _reason(response: httpx.Response) -> str:
    if response.status_code < 400:
        return ""
    try:
        return str(response.json().get("reason", ""))
    except ValueError:
        return ""
