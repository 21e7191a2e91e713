"""A local APNs on HTTP/2 over TLS that checks the provider token and the headers.

The provider token must be an ES256 JWT that verifies with the auth key's
public key and names the key id and team id; requests must be HTTP/2 and
carry ``apns-topic``, ``apns-push-type`` and ``apns-collapse-id``. Tokens the
test marks gone get 410 Unregistered, as Apple answers for an app removed from
the phone.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.servers import Http2Fake
from tests.fakes.webpush import unb64url, verify_es256

KEY_ID = "ABC123DEFG"
TEAM_ID = "TEAM123456"


class FakeApns(Http2Fake):
    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_file = directory / "AuthKey.p8"
        self.key_file.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.pushes: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.gone: set[str] = set()
        self._arrived = asyncio.Condition()
        super().__init__(
            Starlette(routes=[Route("/3/device/{token}", self._push, methods=["POST"])]),
            directory,
        )

    async def wait_for(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.pushes) >= count)
        return self.pushes[:count]

    async def _push(self, request: Request) -> Response:
        headers = request.headers
        try:
            assert request.scope["http_version"] == "2", request.scope["http_version"]
            scheme, _, token = headers["authorization"].partition(" ")
            assert scheme == "bearer"
            point = self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            claims = verify_es256(token, point)
            assert json.loads(unb64url(token.split(".")[0]))["kid"] == KEY_ID
            assert claims["iss"] == TEAM_ID
            assert headers["apns-push-type"] == "alert"
            assert headers["apns-topic"]
            assert headers["apns-collapse-id"]
            body = json.loads(await request.body())
            assert "aps" in body
        except Exception as exc:
            self.refused.append(f"{type(exc).__name__}: {exc}")
            return JSONResponse({"reason": "InvalidProviderToken"}, 403)
        device_token = request.path_params["token"]
        async with self._arrived:
            self.pushes.append(
                {
                    "token": device_token,
                    "host": headers.get("host", ""),
                    "headers": dict(headers),
                    "body": body,
                }
            )
            self._arrived.notify_all()
        if device_token in self.gone:
            return JSONResponse({"reason": "Unregistered", "timestamp": 0}, 410)
        return Response(
            status_code=200, headers={"apns-id": "00000000-0000-0000-0000-000000000000"}
        )
