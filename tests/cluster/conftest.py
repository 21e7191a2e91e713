"""Two Pigeon nodes on one PostgreSQL database and one bus (Redis or NATS), in this process.

Each node is a whole server, as ``pigeon serve`` builds it: its own container,
bus connection, group committer and HTTP/WebSocket listener on a port of its
own. Every test here runs once on Redis and once on NATS, the real servers on
this machine.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pigeon.api.app import create_app
from pigeon.bootstrap import Container, build
from pigeon.config import Settings
from tests.conftest import _truncate
from tests.live import LiveServer, WsClient
from tests.support import FakeClock, Outbox, register

BUSES = {
    "redis": "redis://127.0.0.1:6379/3",
    "nats": "nats://127.0.0.1:4222",
}


@dataclass
class Node:
    """One running node: its container, its listener, an HTTP client on its app."""

    name: str
    container: Container
    app: FastAPI
    server: LiveServer
    http: httpx.AsyncClient
    sockets: list[WsClient] = field(default_factory=list)

    async def connect(self, session: dict[str, Any], **kwargs: Any) -> WsClient:
        """A device's socket on this node, its backlog sent (``drained`` seen)."""
        ws = await WsClient.open(self.server.ws_url, session["access_token"], **kwargs)
        self.sockets.append(ws)
        ready = await ws.next_event("ready")
        assert ready["data"]["deviceId"] == session["device_id"]
        await ws.next_event("drained")
        return ws


@pytest.fixture(params=sorted(BUSES))
def bus_url(request: pytest.FixtureRequest) -> str:
    return BUSES[request.param]


def node_settings(
    tmp_path: Path, name: str, database_url: str, bus_url: str, **extra: Any
) -> Settings:
    return Settings(
        data_dir=tmp_path / name,
        database_url=database_url,
        bus_url=bus_url,
        secret_key="test-secret-key",
        auto_migrate=False,
        send_code_limit_per_number="5/minute;10/day",
        pin_hash_time_cost=1,
        pin_hash_memory_kib=64,
        pin_hash_parallelism=1,
        **extra,
    )


StartNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start_node(
    tmp_path: Path, postgres_url: str, bus_url: str, clock: FakeClock
) -> AsyncIterator[StartNode]:
    """Start nodes on one fresh database and the bus under test; all stop at the end."""
    await _truncate(postgres_url)
    running: list[tuple[Node, contextlib.AsyncExitStack]] = []

    async def start(name: str, **extra: Any) -> Node:
        settings = node_settings(tmp_path, name, postgres_url, bus_url, **extra)
        stack = contextlib.AsyncExitStack()
        container = build(settings, clock=clock)
        app = create_app(settings, container)
        await stack.enter_async_context(app.router.lifespan_context(app))
        stack.push_async_callback(container.close)
        server = LiveServer(app)
        await server.start()
        stack.push_async_callback(server.stop)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        http = httpx.AsyncClient(transport=transport, base_url="http://pigeon.test")
        stack.push_async_callback(http.aclose)
        node = Node(name, container, app, server, http)
        running.append((node, stack))
        return node

    yield start
    for node, stack in reversed(running):
        for ws in node.sockets:
            if ws.close_code is None:
                with contextlib.suppress(Exception):
                    await ws.close()
        await stack.aclose()


@pytest.fixture
async def nodes(start_node: StartNode) -> tuple[Node, Node]:
    return await start_node("a"), await start_node("b")


Person = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def person(nodes: tuple[Node, Node], tmp_path: Path) -> Person:
    """Register a device (a new user, or another device of ``phone``) through node a."""
    numbers = itertools.count(2000)
    a = nodes[0]
    outbox = Outbox(tmp_path / "a" / "sms-outbox.jsonl")

    async def make(phone: str | None = None, device: str = "phone") -> dict[str, Any]:
        number = phone or f"+1415556{next(numbers):04d}"
        return {**await register(a.http, outbox, number, device), "phone": number}

    return make
