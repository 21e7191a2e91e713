"""FCM HTTP v1: a service account's RS256 JWT buys an OAuth token, cached until it expires."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pigeon.domain.push import PushNotice, PushRegistration
from pigeon.push.jwt import rs256
from pigeon.push.results import classify, unreachable
from pigeon.services.ports import PushOutcome, PushResult

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
COLLAPSE_KEY = "unread"
EARLY_REFRESH_SECONDS = 60  # a token about to expire is not used for a send


@dataclass(slots=True, frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key_id: str
    private_key: rsa.RSAPrivateKey
    token_uri: str

    @classmethod
    def load(cls, path: Path) -> ServiceAccount:
        data = json.loads(path.read_text())
        key = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: private_key is not an RSA key")
        return cls(
            project_id=data["project_id"],
            client_email=data["client_email"],
            private_key_id=data.get("private_key_id", ""),
            private_key=key,
            token_uri=data.get("token_uri", "https://oauth2.googleapis.com/token"),
        )


class FcmSender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        account: ServiceAccount,
        base_url: str,
        token_url: str | None = None,
    ) -> None:
        self._client = client
        self._account = account
        self._send_url = f"{base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self._token_url = token_url or account.token_uri
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)

    async def _access_token(self) -> str | PushResult:
        if self._token is not None and self._token[1] > time.monotonic():
            return self._token[0]
        now = int(time.time())
        assertion = rs256(
            self._account.private_key,
            {
                "iss": self._account.client_email,
                "scope": SCOPE,
                "aud": self._account.token_uri,
                "iat": now,
                "exp": now + 3600,
            },
            kid=self._account.private_key_id or None,
        )
        response = await self._client.post(
            self._token_url, data={"grant_type": GRANT_TYPE, "assertion": assertion}
        )
        if response.status_code != 200:
            result = classify(response, gone=(), detail=f"oauth {response.status_code}")
            return result
        body = response.json()
        lifetime = float(body.get("expires_in", 3600)) - EARLY_REFRESH_SECONDS
        self._token = (str(body["access_token"]), time.monotonic() + lifetime)
        return self._token[0]

    async def send(self, registration: PushRegistration, notice: PushNotice) -> PushResult:
        try:
            token = await self._access_token()
            if isinstance(token, PushResult):
                return token
            response = await self._client.post(
                self._send_url,
                json=self._message(registration, notice),
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            return unreachable(exc)
        if response.status_code == 401:  # the token was revoked early: get another
            self._token = None
            return PushResult(PushOutcome.RETRY, detail="401 from FCM")
        error = _error_code(response)
        if error == "UNREGISTERED" or response.status_code == 404:
            return PushResult(PushOutcome.GONE, detail=error or "404")
        return classify(response, gone=(), detail=error)

    @staticmethod
    def _message(registration: PushRegistration, notice: PushNotice) -> dict[str, Any]:
        return {
            "message": {
                "token": registration.token,
                # data values are strings in FCM; the app renders the notification itself
                "data": {key: str(value) for key, value in notice.payload().items()},
                "android": {"collapse_key": COLLAPSE_KEY, "priority": "HIGH"},
            }
        }


def _error_code(response: httpx.Response) -> str:
    """The FcmError code (UNREGISTERED, INVALID_ARGUMENT, ...) of an error answer."""
    if response.status_code < 400:
        return ""
    try:
        error = response.json().get("error", {})
        for detail in error.get("details", []):
            if detail.get("errorCode"):
                return str(detail["errorCode"])
        return str(error.get("status", ""))
    except (ValueError, AttributeError):
        return ""
