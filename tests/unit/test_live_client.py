"""The suite's WebSocket client (tests/live.py) drops nothing and swallows nothing.

A tiny WebSocket server on 127.0.0.1 plays the Pigeon server and sends what a
buggy one could: answers nobody waits for, text that is not JSON, frames that
are neither an event nor an answer. Each must reach the test, never vanish.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.live import ClosedBeforeAnswer, ProtocolViolation, WsClient

Script = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def client_of(script: Script) -> AsyncIterator[WsClient]:
    """A WsClient connected to a server that runs ``script`` on the connection."""
    async with serve(script, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = await WsClient.open(f"ws://127.0.0.1:{port}", auto_ack=False)
        try:
            yield client
        finally:
            await client.socket.close()
            await client.closed()


async def answer_each_ping(socket: ServerConnection, extra: list[str]) -> None:
    """Answer pings; send ``extra`` frames before the first answer."""
    async for raw in socket:
        frame = json.loads(raw)
        for text in extra:
            await socket.send(text)
        extra = []
        await socket.send(json.dumps({"id": frame["id"], "ok": True, "data": {"pong": True}}))


async def test_answers_nobody_waits_for_are_kept_in_order() -> None:
    unclaimed = [
        json.dumps({"id": None, "ok": False, "error": {"code": "malformed_frame", "message": "x"}}),
        json.dumps({"id": 99, "ok": True, "data": None}),
    ]
    event = json.dumps({"event": "typing", "data": {"chatId": "c", "userId": "u"}})

    async with client_of(lambda s: answer_each_ping(s, [*unclaimed, event])) as client:
        assert await client.call("ping") == {"pong": True}
        assert await client.next_answer() == json.loads(unclaimed[0])
        assert await client.next_answer() == json.loads(unclaimed[1])
        assert client.unread() == [json.loads(event)]
        assert client.unread() == []


async def test_a_ping_barrier_returns_the_events_before_its_answer() -> None:
    events = [json.dumps({"event": "presence", "data": {"n": n}}) for n in range(3)]
    async with client_of(lambda s: answer_each_ping(s, events)) as client:
        assert [f["data"]["n"] for f in await client.ping_barrier()] == [0, 1, 2]
        assert await client.ping_barrier() == []


@pytest.mark.parametrize(
    "bad",
    [
        "this is not JSON",
        json.dumps([1, 2, 3]),
        json.dumps({"hello": "world"}),  # neither an event nor an answer
        json.dumps({"id": 1, "data": {}}),  # an answer without ``ok``
        json.dumps({"event": "message"}),  # an event without data
    ],
    ids=["not-json", "not-an-object", "neither", "answer-without-ok", "event-without-data"],
)
async def test_a_frame_outside_the_protocol_fails_the_client_loudly(bad: str) -> None:
    sent = asyncio.Event()

    async def script(socket: ServerConnection) -> None:
        await socket.recv()  # the request
        await socket.send(bad)
        sent.set()
        await socket.wait_closed()

    async with client_of(script) as client:
        # A request waiting at the time fails with the client's error...
        with pytest.raises(ProtocolViolation):
            await client.request("ping")
        # ...and so does every later read, instead of a timeout or nothing.
        with pytest.raises(ProtocolViolation):
            await client.next_event(timeout=1)
        with pytest.raises(ProtocolViolation):
            await client.next_answer(timeout=1)
        with pytest.raises(ProtocolViolation):
            client.unread()
        with pytest.raises(ProtocolViolation):
            await client.request("ping")
        assert sent.is_set()


async def test_a_close_fails_the_requests_still_waiting() -> None:
    async def script(socket: ServerConnection) -> None:
        await socket.recv()
        await socket.close(1011, "gone")

    async with client_of(script) as client:
        with pytest.raises(ClosedBeforeAnswer):
            await client.request("ping")
        assert await client.closed() == 1011
        assert client.close_reason == "gone"
