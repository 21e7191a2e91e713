"""Fixtures for the gateway: a live server and registered users with devices."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.live import LiveServer, WsClient
from tests.support import Outbox, register


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[LiveServer]:
    live = LiveServer(app)
    await live.start()
    yield live
    await live.stop()


Connect = Callable[..., Awaitable[WsClient]]


@pytest.fixture
async def connect(server: LiveServer) -> AsyncIterator[Connect]:
    """Open a device's socket (closed at the end of the test)."""
    opened: list[WsClient] = []

    async def open_socket(session: dict[str, Any], **kwargs: Any) -> WsClient:
        client = await WsClient.open(server.ws_url, session["access_token"], **kwargs)
        ready = await client.next_event("ready")
        assert ready["data"]["deviceId"] == session["device_id"]
        opened.append(client)
        return client

    yield open_socket
    for client in opened:
        if client.close_code is None:
            await client.close()
        client.check()  # a frame outside the protocol that came after the test's last read
        # An answer nobody waited for and nobody read (a refused ack, say) is a bug
        # the test did not look at.
        assert client.answers.empty(), client.unread()


Register = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def user(client: httpx.AsyncClient, outbox: Outbox) -> Register:
    """Register a device for a phone number (a new user, or another device of one)."""
    counter = iter(range(1000, 10_000))

    async def make(phone: str | None = None, device: str = "phone") -> dict[str, Any]:
        return await register(client, outbox, phone or f"+1415555{next(counter):04d}", device)

    return make
