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
"""

from __future__ import annotations

import asyncio
import contextlib

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

CLOSE_GRACE_SECONDS = 2.0


class WebSocketProtocol(WebSocketsSansIOProtocol):
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
