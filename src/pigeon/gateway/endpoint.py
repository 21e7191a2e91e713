"""``GET /v1/ws``: authenticate the upgrade, then hand the socket to a DeviceConnection.

The application calls ``serve`` for this one path ahead of FastAPI's router and
middleware: a WebSocket lives for hours, and every layer it passes through
keeps a frame alive per connection and wraps every frame sent or received.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from pigeon.domain.errors import Unauthenticated
from pigeon.gateway import events
from pigeon.gateway.connection import (
    CLOSE_POLICY,
    CLOSE_SERVER_ERROR,
    CLOSE_UNSUPPORTED,
    DeviceConnection,
)
from pigeon.gateway.frames import FrameError, parse_command
from pigeon.services.accounts import Principal
from pigeon.services.ports import StorageError

PATH = "/v1/ws"
_URL_TOKEN_PARAMS = ("token", "access_token", "auth", "authorization")


async def serve(websocket: WebSocket) -> None:
    gateway = websocket.app.state.gateway
    if any(name in websocket.query_params for name in _URL_TOKEN_PARAMS):
        # Refused before the upgrade: URLs end up in logs and browser history.
        await websocket.close(CLOSE_POLICY, "tokens in the URL are refused")
        return
    await websocket.accept()
    credentials = await _credentials(websocket, gateway.auth_timeout)
    if credentials is None:
        return
    # A reconnect storm waits here, with its tokens read, so connected devices'
    # commands still find the database pool (gateway/admission.py). The permit
    # ends with the connection's first page of queued events.
    permit = await gateway.admission.enter()
    try:
        principal = await _authenticate(websocket, *credentials)
        if principal is None:
            return
        ready = events.ready_frame(principal.user_id, principal.device_id)
        try:
            await websocket.send_text(events.encode(ready))
        except (WebSocketDisconnect, RuntimeError):
            return  # the client left during the handshake
        services, limits = gateway.services, gateway.limits
        await DeviceConnection(websocket, principal, services, limits, permit.release).run()
    finally:
        permit.release()


async def _credentials(websocket: WebSocket, auth_seconds: float) -> tuple[str, Any] | None:
    """The token of the Authorization header, or of a first ``auth`` frame (with its id)."""
    header = websocket.headers.get("authorization", "")
    request_id = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            await websocket.close(CLOSE_POLICY, "invalid_token")
            return None
    else:
        try:
            async with asyncio.timeout(auth_seconds):
                text = await websocket.receive_text()
        except TimeoutError:
            await websocket.close(CLOSE_POLICY, "auth_timeout")
            return None
        except KeyError:  # a binary frame: closed like one after authentication
            await websocket.close(CLOSE_UNSUPPORTED, "binary frames are not supported")
            return None
        except (WebSocketDisconnect, RuntimeError):
            return None
        try:
            command = parse_command(text)
        except FrameError:
            command = None
        if command is None or command.type != "auth":
            await websocket.close(CLOSE_POLICY, "auth_required")
            return None
        token, request_id = command.data.token, command.id
    return token, request_id


async def _authenticate(websocket: WebSocket, token: str, request_id: Any) -> Principal | None:
    """The device behind the token; the socket is closed when there is none."""
    accounts = websocket.app.state.gateway.services.accounts
    try:
        principal: Principal = await accounts.authenticate(token.strip())
    except Unauthenticated:
        await websocket.close(CLOSE_POLICY, "invalid_token")
        return None
    except StorageError:  # the database is away: the client reconnects with backoff
        await websocket.close(CLOSE_SERVER_ERROR, "unavailable")
        return None
    if request_id is not None:
        reply = {"userId": principal.user_id, "deviceId": principal.device_id}
        try:
            await websocket.send_text(events.encode(events.answer(request_id, reply)))
        except (WebSocketDisconnect, RuntimeError):
            return None  # the client left during the handshake
    return principal
