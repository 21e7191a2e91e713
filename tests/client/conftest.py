"""Fixtures for the SDK tests: a live server (SQLite and PostgreSQL), a cuttable proxy
in front of it, and devices registered and connected through ``pigeon.client``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI

from pigeon.client import (
    Connection,
    Event,
    MessageEvent,
    PigeonClient,
    ReconnectPolicy,
    Session,
    websocket_url,
)
from tests.client.proxy import Proxy
from tests.live import LiveServer
from tests.support import Outbox

E = TypeVar("E")

# Quick reconnects keep the suite fast; the backoff test sets its own policy.
FAST_RECONNECT = ReconnectPolicy(initial_delay=0.05, max_delay=0.5, max_attempts=20)


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[LiveServer]:
    live = LiveServer(app)
    await live.start()
    yield live
    await live.stop()


@pytest.fixture
async def proxy(server: LiveServer) -> AsyncIterator[Proxy]:
    middle = Proxy(server.port)
    await middle.start()
    yield middle
    await middle.stop()


@pytest.fixture
async def sdk(server: LiveServer) -> AsyncIterator[PigeonClient]:
    async with PigeonClient(server.http_url) as client:
        yield client


Register = Callable[..., Awaitable[Session]]


@pytest.fixture
def register(sdk: PigeonClient, outbox: Outbox) -> Register:
    """Register a device through the SDK, reading the code from the SMS outbox."""
    numbers = iter(range(2000, 10_000))

    async def make(phone: str | None = None, device: str = "laptop") -> Session:
        phone = phone or f"+1415555{next(numbers):04d}"
        sent = await sdk.request_code(phone)
        return await sdk.verify(sent.phone, outbox.last_code(sent.phone), device)

    return make


@dataclass
class Device:
    """A connected device whose events a background task collects."""

    session: Session
    conn: Connection
    received: list[Event] = field(default_factory=list)
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    error: BaseException | None = None
    reader: asyncio.Task[None] | None = None

    @property
    def user_id(self) -> str:
        return self.session.user_id

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.conn.events():
                self.received.append(event)
                await self.queue.put(event)
        except Exception as exc:
            self.error = exc

    async def next(self, kind: type[E], timeout: float = 10) -> E:
        """The next event of type ``kind`` (skipping others)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.queue.get()
                if isinstance(event, kind):
                    return event

    async def messages(self, count: int, timeout: float = 10) -> list[MessageEvent]:
        return [await self.next(MessageEvent, timeout) for _ in range(count)]

    async def messages_until(self, message_id: str, timeout: float = 10) -> list[MessageEvent]:
        """The next messages up to the one ``message_id`` (included).

        A barrier: a message sent after an action reaches this device after
        anything the action queued for it (tests.support explains why).
        """
        got: list[MessageEvent] = []
        async with asyncio.timeout(timeout):
            while not got or got[-1].message_id != message_id:
                got.append(await self.next(MessageEvent, timeout))
        return got

    async def ended(self, timeout: float = 10) -> BaseException | None:
        """Wait until ``events()`` stopped; the error it raised, if any."""
        assert self.reader is not None
        await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        return self.error

    def received_messages(self) -> list[MessageEvent]:
        return [event for event in self.received if isinstance(event, MessageEvent)]


OpenDevice = Callable[..., Awaitable[Device]]


@pytest.fixture
async def open_device(
    server: LiveServer, proxy: Proxy, sdk: PigeonClient
) -> AsyncIterator[OpenDevice]:
    """Connect a session (directly, or through the proxy) and collect its events."""
    devices: list[Device] = []

    async def open_(
        session: Session, *, via_proxy: bool = False, read: bool = True, **options: Any
    ) -> Device:
        url = websocket_url(proxy.http_url if via_proxy else server.http_url)
        options.setdefault("reconnect", FAST_RECONNECT)
        options.setdefault("request_timeout", 5.0)
        conn = Connection(url, session, refresh=sdk.refresh, **options)
        await conn.open()
        device = Device(session, conn)
        devices.append(device)
        if read:
            device.start()
        return device

    yield open_
    for device in devices:
        await device.conn.close()
        if device.reader is not None:
            device.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await device.reader
