"""The coalescing transport under the WebSocket protocol: fewer writes, same bytes, same order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from pigeon.gateway.transport import FLUSH_AT, SEND_TEXT_NOW, CoalescingTransport, NewcomerPacer
from tests.live import LiveServer


class Pair:
    """Two connected sockets: the server side behind an asyncio transport, and a peer."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def __aenter__(self) -> tuple[CoalescingTransport, socket.socket, list[bytes]]:
        loop = asyncio.get_running_loop()
        ours, self.peer = socket.socketpair()
        self.peer.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        real_write = transport.write

        def counting_write(data: bytes | bytearray | memoryview) -> None:
            self.writes.append(bytes(data))
            real_write(data)

        transport.write = counting_write  # type: ignore[method-assign]
        self.transport = transport
        return CoalescingTransport(transport, loop), self.peer, self.writes  # type: ignore[arg-type]

    async def __aexit__(self, *exc: object) -> None:
        self.transport.abort()
        self.peer.close()


async def read_all(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    for _ in range(100):
        if len(data) >= size:
            break
        data += await asyncio.wait_for(loop.sock_recv(peer, 65536), 2)
    return data


async def test_writes_in_one_turn_leave_in_one_write_in_order() -> None:
    async with Pair() as (transport, peer, writes):
        for n in range(5):
            transport.write(f"frame-{n};".encode())
        assert writes == []  # nothing yet: the turn is not over
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert writes == [b"frame-0;frame-1;frame-2;frame-3;frame-4;"]
        transport.write(b"next")
        await asyncio.sleep(0)
        assert len(writes) == 2
        assert await read_all(peer, 44) == b"frame-0;frame-1;frame-2;frame-3;frame-4;next"


async def test_a_turn_that_writes_much_sends_it_before_the_turn_ends() -> None:
    """Flow control sees a burst that never yields: past FLUSH_AT bytes, they go at once."""
    async with Pair() as (transport, peer, writes):
        chunk = b"y" * (FLUSH_AT // 4)
        for _ in range(4):
            transport.write(chunk)
        assert writes == [chunk * 4]  # within the turn
        transport.write(b"tail")
        assert writes == [chunk * 4]  # below the bound again: the turn's end takes it
        assert transport.get_write_buffer_size() >= len(b"tail")
        assert await read_all(peer, FLUSH_AT) == chunk * 4


async def test_writelines_and_write_share_the_buffer_in_order() -> None:
    async with Pair() as (transport, peer, writes):
        transport.write(b"a;")
        transport.writelines([b"b;", b"c;"])
        transport.write(b"d;")
        await asyncio.sleep(0)
        assert writes == [b"a;b;c;d;"]
        assert await read_all(peer, 8) == b"a;b;c;d;"


async def test_close_sends_what_was_written_before_it() -> None:
    async with Pair() as (transport, peer, writes):
        transport.write(b"last words")
        assert transport.get_write_buffer_size() >= len(b"last words")
        transport.close()
        assert writes == [b"last words"]
        assert await read_all(peer, 10) == b"last words"


async def test_abort_drops_what_was_not_sent() -> None:
    async with Pair() as (transport, _peer, writes):
        transport.write(b"never")
        transport.abort()
        await asyncio.sleep(0)
        assert writes == []
        assert transport.is_closing()  # passed through to the real transport


# -- newcomers' first requests, a few per turn ------------------------------------


class WaitingSocket:
    """What the pacer asks of a transport: whether it is read, whether it is closing."""

    def __init__(self) -> None:
        self.reading = True
        self.closing = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing


class Newcomer:
    def __init__(self, name: str, handled: list[bytes]) -> None:
        self.name = name.encode()
        self.transport = WaitingSocket()
        self._handled = handled

    def handle_first_request(self, data: bytes) -> None:
        self.transport.resume_reading()
        self._handled.append(data)


class Turns:
    """The one thing the pacer asks of an event loop, ``call_soon``, with turns run by hand:
    what is scheduled during a turn runs in the next one, as on a real loop."""

    def __init__(self) -> None:
        self._scheduled: list[Callable[[], object]] = []

    def call_soon(self, callback: Callable[[], object]) -> None:
        self._scheduled.append(callback)

    def turn(self) -> None:
        now, self._scheduled = self._scheduled, []
        for callback in now:
            callback()


def test_newcomers_first_requests_are_handled_a_few_per_turn_oldest_first() -> None:
    turns = Turns()
    pacer = NewcomerPacer(per_turn=2, loop=turns)  # type: ignore[arg-type]
    handled: list[bytes] = []
    newcomers = [Newcomer(f"r{n}", handled) for n in range(7)]
    now = [pacer.now(n, n.name) for n in newcomers]  # type: ignore[arg-type]
    assert now == [True, True, False, False, False, False, False]  # this turn's two
    assert [n.transport.reading for n in newcomers] == [True, True] + [False] * 5
    newcomers[3].transport.closing = True  # gone while it waited: skipped

    turns.turn()
    assert handled == [b"r2", b"r4"]
    late = Newcomer("late", handled)
    assert not pacer.now(late, late.name)  # type: ignore[arg-type]  # behind those waiting
    turns.turn()
    assert handled == [b"r2", b"r4", b"r5", b"r6"]
    turns.turn()
    assert handled[-1] == b"late"
    assert all(n.transport.reading for n in [*newcomers[:3], *newcomers[4:], late])

    turns.turn()  # the budget is back once nobody waits
    fresh = Newcomer("fresh", handled)
    assert pacer.now(fresh, fresh.name)  # type: ignore[arg-type]


async def test_a_burst_of_new_connections_is_answered_every_one(app: FastAPI) -> None:
    """Through the real server, one newcomer per turn: every request comes back, none
    waits for ever, and the keep-alive requests after the first are not held back."""
    server = LiveServer(app, newcomers_per_turn=1)
    await server.start()
    try:
        clients = [httpx.AsyncClient(base_url=server.http_url) for _ in range(40)]
        try:
            firsts = await asyncio.wait_for(
                asyncio.gather(*(c.get("/health") for c in clients)), 10
            )
            seconds = await asyncio.gather(*(c.get("/health") for c in clients))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
    finally:
        await server.stop()
    assert [r.status_code for r in firsts + seconds] == [200] * 80


async def test_a_peer_that_stops_reading_is_dropped_after_the_send_timeout() -> None:
    """Writes to a peer that reads nothing fill the socket's buffers, then wait; once a
    write has waited the send timeout the connection is dropped and the writer told."""
    ended: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
    app = FastAPI()

    @app.websocket("/flood")
    async def flood(websocket: WebSocket) -> None:
        await websocket.accept()
        started = asyncio.get_running_loop().time()
        try:
            for _ in range(100_000):  # ~6 GB: far more than any socket buffer holds
                await websocket.send_text("x" * 65536)
            ended.set_result(("wrote everything", 0.0))
        except WebSocketDisconnect:
            ended.set_result(("dropped", asyncio.get_running_loop().time() - started))

    server = LiveServer(app, send_timeout=0.5)
    await server.start()
    try:
        # max_queue=1: the client stops reading its socket once one frame waits unread.
        async with connect(
            f"ws://127.0.0.1:{server.port}/flood", max_queue=1, max_size=None, close_timeout=1
        ):
            outcome, seconds = await asyncio.wait_for(ended, 20)
    finally:
        await server.stop()
    assert outcome == "dropped"
    assert seconds >= 0.5


# Each length of a frame header (7 bits, 16 bits, 64 bits) at its edges, and UTF-8.
TEXTS = ["", "a", "x" * 125, "x" * 126, "x" * 127, "y" * 65535, "z" * 65536, "é" * 40_000, "ok"]


@pytest.mark.parametrize("compression", [False, True])
async def test_text_written_directly_arrives_whole_and_in_order(compression: bool) -> None:
    """The gateway's direct writer frames text as the WebSocket stack would; with
    compression negotiated it declines, and the ASGI way carries the text."""
    direct: list[bool] = []
    app = FastAPI()

    @app.websocket("/texts")
    async def texts(websocket: WebSocket) -> None:
        await websocket.accept()
        send_now = websocket.scope["extensions"][SEND_TEXT_NOW]
        for text in TEXTS:
            direct.append(send_now(text))
            if not direct[-1]:
                await websocket.send_text(text)
        await websocket.receive_text()  # until the client has read everything

    server = LiveServer(app, compression=compression)
    await server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/texts"
        async with connect(url, compression="deflate" if compression else None) as client:
            received = [await asyncio.wait_for(client.recv(), 5) for _ in TEXTS]
            await client.send("done")
    finally:
        await server.stop()
    assert received == TEXTS
    assert direct == [not compression] * len(TEXTS)
