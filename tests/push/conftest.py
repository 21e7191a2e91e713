"""Push tests: a live server on real time (coalescing and retries are timed), a Web Push fake."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pigeon.api.app import create_app
from pigeon.bootstrap import Container, build
from pigeon.config import Settings
from tests.fakes.webpush import FakeWebPush
from tests.gateway.conftest import connect, server, user  # noqa: F401 - the gateway's fixtures
from tests.live import LiveServer, WsClient

COALESCE_SECONDS = 1.0


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
def clock() -> RealClock:  # type: ignore[override]
    return RealClock()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "push_allow_private_endpoints": True,  # the fakes listen on 127.0.0.1
            "push_coalesce_seconds": COALESCE_SECONDS,
            "push_retry_base_seconds": 0.05,
        }
    )


@pytest.fixture
async def webpush() -> AsyncIterator[FakeWebPush]:
    fake = FakeWebPush()
    await fake.start()
    yield fake
    await fake.stop()


@dataclass
class Running:
    container: Container
    server: LiveServer
    http: httpx.AsyncClient

    async def connect(self, session: dict[str, Any]) -> WsClient:
        ws = await WsClient.open(self.server.ws_url, session["access_token"])
        await ws.next_event("drained")
        return ws


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """A whole server on ``settings``, as ``pigeon serve`` runs it; stopped at the end."""
    container = build(settings, clock=RealClock())
    app = create_app(settings, container)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        server = LiveServer(app)
        await server.start()
        stack.push_async_callback(server.stop)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://pigeon.test")
        )
        yield Running(container, server, http)
