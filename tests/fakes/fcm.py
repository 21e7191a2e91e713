"""A local FCM HTTP v1 and Google OAuth token endpoint that check what they receive.

The token endpoint takes the JWT-bearer grant and verifies the assertion's
RS256 signature with the service account's public key, its issuer, scope and
audience; the send endpoint takes only a token it issued and checks the v1
message shape. Unregistered tokens get FCM's 404 UNREGISTERED error.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.servers import HttpFake

PROJECT = "pigeon-test"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeFcm(HttpFake):
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "pigeon@pigeon-test.iam.gserviceaccount.com"
        self.token_requests = 0
        self.messages: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.unregistered: set[str] = set()
        self._tokens: set[str] = set()
        self._arrived = asyncio.Condition()
        super().__init__(
            Starlette(
                routes=[
                    Route("/token", self._token, methods=["POST"]),
                    Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
                ]
            )
        )

    def service_account(self, directory: Path) -> Path:
        """The service-account JSON a Firebase console would hand out, pointing here."""
        path = directory / "fcm-service-account.json"
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "key-1",
                    "private_key": pem,
                    "client_email": self.client_email,
                    "token_uri": f"{self.origin}/token",
                }
            )
        )
        return path

    async def wait_for(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return self.messages[:count]

    async def _token(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        try:
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
            header, claims, signature = str(form["assertion"]).split(".")
            assert json.loads(_unb64url(header)) == {"typ": "JWT", "alg": "RS256", "kid": "key-1"}
            self.key.public_key().verify(
                _unb64url(signature),
                f"{header}.{claims}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            decoded = json.loads(_unb64url(claims))
            assert decoded["iss"] == self.client_email
            assert decoded["scope"] == SCOPE
            assert decoded["aud"] == f"{self.origin}/token"
            assert decoded["iat"] <= time.time() < decoded["exp"]
        except Exception as exc:
            self.refused.append(f"token: {type(exc).__name__}: {exc}")
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        self.token_requests += 1
        token = secrets.token_urlsafe(16)
        self._tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    async def _send(self, request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self._tokens:
            self.refused.append("send: no valid OAuth token")
            return JSONResponse({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, 401)
        body = await request.json()
        try:
            assert request.path_params["project"] == PROJECT
            message = body["message"]
            assert set(message) == {"token", "data", "android"}, message
            assert all(isinstance(v, str) for v in message["data"].values())
            assert message["android"]["priority"] == "HIGH"
            assert message["android"]["collapse_key"]
        except Exception as exc:
            self.refused.append(f"send: {type(exc).__name__}: {exc}")
            return JSONResponse({"error": {"code": 400, "status": "INVALID_ARGUMENT"}}, 400)
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        if message["token"] in self.unregistered:
            return JSONResponse(
                {
                    "error": {
                        "code": 404,
                        "message": "Requested entity was not found.",
                        "status": "NOT_FOUND",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                "errorCode": "UNREGISTERED",
                            }
                        ],
                    }
                },
                404,
            )
        return JSONResponse({"name": f"projects/{PROJECT}/messages/{secrets.token_hex(8)}"})
