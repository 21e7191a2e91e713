"""The WebSocket protocol ``pigeon serve`` runs: uvicorn's websockets-sansio, except for peers
that stopped reading.

uvicorn writes a close frame only once its write buffer has room again, and
its keepalive timeout closes the transport gracefully, which waits for the
buffer to be flushed. A peer that keeps its socket open but never reads
would therefore keep the connection (its socket buffers, its
DeviceConnection) for as long as it likes: the gateway's 1008 "not reading"
close never took effect. Here a close frame that cannot be written within
``CLOSE_GRACE_SECONDS``, and a keepalive timeout that leaves data buffered,
abort the connection instead.

It also coalesces writes: every frame written to one socket during one turn
of the event loop leaves in a single ``send()`` (the pump writes an answer,
its events and receipts in a burst, and a system call per frame was a sixth
of the server's CPU at saturation).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any, cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

CLOSE_GRACE_SECONDS = 2.0


class CoalescingTransport:
    """A transport whose writes during one turn of the loop go out in one write.

    Order is kept: everything goes through the one buffer, and closing
    flushes it first. Flow control stays with the real transport, which gets
    the bytes at the end of the turn and pauses the protocol when it is full.
    """

    __slots__ = ("_loop", "_pending", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if data:
            self._pending.append(data)
            if not self._scheduled:
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
        pending = self._pending
        if pending:
            self._pending = []
            if not self._transport.is_closing():
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class WebSocketProtocol(WebSocketsSansIOProtocol):
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
        await super().send(message)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        if self.transport.get_write_buffer_size():
            self.transport.abort()
