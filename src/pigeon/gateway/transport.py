"""The WebSocket protocol ``pigeon serve`` runs: uvicorn's websockets-sansio, except for peers
that stopped reading.

uvicorn writes a close frame only once its write buffer has room again, and
its keepalive timeout closes the transport gracefully, which waits for the
buffer to be flushed. A peer that keeps its socket open but never reads
would therefore keep the connection (its socket buffers, its
DeviceConnection) for as long as it likes. Here a write that waits
``PIGEON_WS_SEND_TIMEOUT_SECONDS`` for the peer to read, a close frame that
cannot be written within ``CLOSE_GRACE_SECONDS``, and a keepalive timeout
that leaves data buffered abort the connection.

It also coalesces writes: every frame written to one socket during one turn
of the event loop leaves in a single ``send()`` (the pump writes an answer,
its events and receipts in a burst, and a system call per frame was a sixth
of the server's CPU at saturation).

And it holds less per idle connection (docs/performance.md): its event
queue and its writable flag are lists instead of ``asyncio.Queue`` and
``asyncio.Event`` (three and one empty deques, ~0.75 KiB each), and the
handshake's request and response (their headers, ~3 KiB) are let go once
the socket is accepted.

Before the WebSocket protocol takes a socket over, uvicorn's HTTP protocol
reads its upgrade request. Here that is paced (``NewcomerPacer``): one turn
of the event loop handles at most ``PIGEON_NEW_CONNECTIONS_PER_TURN`` new
connections' first requests, so a reconnect storm cannot hold connected
devices' frames for a long turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import structlog
from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

log = structlog.get_logger(__name__)

CLOSE_GRACE_SECONDS = 2.0
# The ASGI scope extension under which a socket offers ``send_text_now``.
SEND_TEXT_NOW = "pigeon.send_text_now"
DEFAULT_SEND_TIMEOUT = 30.0  # PIGEON_WS_SEND_TIMEOUT_SECONDS
# Bytes written in one turn of the loop that go to the socket at once, not at the turn's end.
FLUSH_AT = 64 * 1024


class CoalescingTransport:
    """A transport whose writes during one turn of the loop go out in one write.

    Order is kept: everything goes through the one buffer, and closing
    flushes it first. Flow control stays with the real transport, which gets
    the bytes at the end of the turn, or as soon as ``FLUSH_AT`` bytes wait:
    a burst of writes that never yields (the pump's, up to the whole in-flight
    window of frames) still reaches the real transport, which pauses the
    protocol when it is full, and the burst's next write then waits for the
    peer instead of piling up here.
    """

    __slots__ = ("_loop", "_pending", "_pending_size", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if data:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size >= FLUSH_AT:
                self._send_pending()  # the end of the turn still flushes what follows
            elif not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self.flush)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def flush(self) -> None:
        self._scheduled = False
        self._send_pending()

    def _send_pending(self) -> None:
        pending = self._pending
        if pending:
            self._pending, self._pending_size = [], 0
            if not self._transport.is_closing():
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._pending_size = [], 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._pending_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Inbox:
    """The received events of one socket, for its one reader (the application's receive).

    What uvicorn asks of its ``asyncio.Queue`` (``put_nowait``, ``get``,
    ``empty``) at a fraction of its memory. It holds an event or two: uvicorn
    stops reading the socket while the application has one to take.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[ASGIReceiveEvent] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class Flag:
    """``asyncio.Event`` for uvicorn's ``writable``, without a deque per connection.

    A wait gives up after ``timeout`` seconds with ``TimeoutError``: the only
    thing a write ever waits for is the peer reading, so a write that waits
    that long is to a peer that stopped reading (``WebSocketProtocol.send``
    then drops the connection). A deadline here costs nothing while the
    socket is writable; one around every burst of writes was a timer per
    burst, a few per message at ordinary load.
    """

    __slots__ = ("_set", "_timeout", "_waiters")

    def __init__(self, timeout: float = DEFAULT_SEND_TIMEOUT) -> None:
        self._set = True
        self._timeout = timeout
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(self._timeout):
                    await waiter
            finally:
                if self._waiters is not None and waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self, *args: Any, send_timeout: float = DEFAULT_SEND_TIMEOUT, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.queue = cast(asyncio.Queue[ASGIReceiveEvent], Inbox())
        self.writable = cast(asyncio.Event, Flag(send_timeout))

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when the upgrade was refused
        if scope is not None:  # the application's task has not run yet: it sees this
            scope["extensions"][SEND_TEXT_NOW] = self.send_text_now

    def send_text_now(self, text: str) -> bool:
        """Write ``text`` as one WebSocket frame now, if the socket can take it at once.

        The gateway's hot path: ASGI's ``send`` goes through Starlette's state
        machine, uvicorn's and websockets' checks, a frame object and its
        serialisation, a third of the cost of a message's frames. A text frame
        from a server is a header and the UTF-8 bytes (RFC 6455 5.2: no mask),
        so it is written here whole, in order with every other write (they
        share the coalescing transport). False when it must go the ASGI way:
        the peer is not reading (the wait and its timeout are there), the
        connection is closing or closed, or an extension (compression) would
        change the frame.
        """
        # A close frame sent or received leaves the state CLOSING; a lost
        # connection leaves it as it was, hence ``disconnected``.
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.conn.state is not State.OPEN
            or self.conn.extensions
        ):
            return False
        payload = text.encode()
        self.transport.write(text_frame_header(len(payload)) + payload)
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close" and not self.writable.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                    await self.writable.wait()
            if not self.writable.is_set():
                self.transport.abort()  # the peer is not reading: drop the connection
        try:
            await super().send(message)
        except TimeoutError:
            # The peer has read nothing for the send timeout: it would keep its
            # socket's buffers and its connection for as long as it liked. Its
            # queue is safe in the database.
            log.info("gateway.stalled", client=self.client)
            self.transport.abort()
            raise ClientDisconnected from None
        if message["type"] == "websocket.accept":
            # Read only to answer the upgrade; kept, they would live as long as the socket.
            # websockets' parser keeps the request too (a local of its generator): its
            # headers, already copied into the scope, are emptied.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        if self.transport.get_write_buffer_size():
            self.transport.abort()


class NewcomerPacer:
    """Lets the event loop handle at most ``per_turn`` new connections' first requests per turn.

    In a reconnect storm the upgrade requests of a thousand new connections
    could arrive in one turn of the loop, and parsing them (the HTTP request,
    the WebSocket handshake: ~140 µs each) made turns of 0.1-0.6 s, several
    in a row, while the frames of devices already connected waited for the
    turn to end. A first request past the turn's budget is kept, its socket
    no longer read, and handled in a later turn, oldest first.
    """

    __slots__ = ("_budget", "_loop", "_per_turn", "_scheduled", "_waiting")

    def __init__(self, per_turn: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop  # by default the server's, once it runs
        self._per_turn = per_turn
        self._budget = per_turn
        self._waiting: deque[tuple[PacedHttpProtocol, bytes]] = deque()
        self._scheduled = False

    def now(self, protocol: PacedHttpProtocol, data: bytes) -> bool:
        """True: handle ``data`` now; False: it waits here for a later turn."""
        self._schedule()  # the budget comes back next turn
        if not self._waiting and self._budget > 0:
            self._budget -= 1
            return True
        protocol.transport.pause_reading()
        self._waiting.append((protocol, data))
        return False

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._turn)  # runs next turn, after what is ready now

    def _turn(self) -> None:
        self._scheduled = False
        self._budget = self._per_turn
        waiting = self._waiting
        while waiting and self._budget > 0:
            protocol, data = waiting.popleft()
            if not protocol.transport.is_closing():
                self._budget -= 1
                protocol.handle_first_request(data)
        if waiting:
            self._schedule()


class PacedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, handling a connection's first request when its server's
    pacer says so."""

    def __init__(self, *args: Any, pacer: NewcomerPacer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pacer: NewcomerPacer | None = pacer  # until the first request is in

    def data_received(self, data: bytes) -> None:
        pacer, self._pacer = self._pacer, None
        if pacer is None or pacer.now(self, data):
            super().data_received(data)

    def handle_first_request(self, data: bytes) -> None:
        # Reading resumes first: the request may switch the socket to the WebSocket
        # protocol, which pauses and resumes reading for itself from then on.
        self.transport.resume_reading()
        super().data_received(data)


def text_frame_header(size: int) -> bytes:
    """A final, unmasked text frame's header for ``size`` bytes (RFC 6455 5.2)."""
    if size < 126:
        return bytes((0x81, size))
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size)
    return struct.pack("!BBQ", 0x81, 127, size)


def websocket_protocol(send_timeout: float) -> type[WebSocketProtocol]:
    """The WebSocket protocol to give uvicorn: a write that waits ``send_timeout`` for
    the peer to read fails (``PIGEON_WS_SEND_TIMEOUT_SECONDS``). A partial, for the
    reason ``paced_http_protocol`` gives."""
    partial = functools.partial(WebSocketProtocol, send_timeout=send_timeout)
    return cast(type[WebSocketProtocol], partial)


def paced_http_protocol(per_turn: int) -> type[PacedHttpProtocol]:
    """The HTTP protocol to give one server's uvicorn: ``per_turn`` newcomers handled per
    turn (``PIGEON_NEW_CONNECTIONS_PER_TURN``). A partial, not a class made here, so that
    ``--workers`` can pickle the configuration for its processes (each gets its pacer)."""
    partial = functools.partial(PacedHttpProtocol, pacer=NewcomerPacer(per_turn))
    return cast(type[PacedHttpProtocol], partial)
