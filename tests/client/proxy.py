"""A TCP proxy between the SDK and the live server that a test can cut, hold and refuse.

It stands for the network: ``cut()`` drops every connection at once (both
sides see the socket die, no closing handshake), ``hold()`` stops forwarding
in one direction (bytes pile up, as on a stalled link), ``refuse(n)`` drops
the next ``n`` new connections right after accepting them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    downstream_bytes: bytearray = field(default_factory=bytearray)


class Proxy:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._refuse = 0
        self._open = {"up": asyncio.Event(), "down": asyncio.Event()}
        for gate in self._open.values():
            gate.set()
        self.port = 0
        self.accepted = 0  # connections accepted (refused ones included)
        self.transcript = bytearray()  # everything the server sent to clients, in order
        self.received = {"up": 0, "down": 0}  # bytes read from each side so far
        self.held = {"up": 0, "down": 0}  # bytes read but not forwarded: waiting at a hold

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 10)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    def cut(self) -> None:
        """Drop every open connection, without a closing handshake."""
        for link in self._links:
            for task in link.tasks:
                task.cancel()
            link.client.transport.abort()
            link.upstream.transport.abort()
        self._links.clear()

    def hold(self, direction: str) -> None:
        """Stop forwarding ``up`` (client to server) or ``down`` (server to client)."""
        self._open[direction].clear()

    def release(self, direction: str) -> None:
        self._open[direction].set()

    def refuse(self, count: int) -> None:
        """Drop the next ``count`` connections as soon as they are accepted."""
        self._refuse = count

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refuse > 0:
            self._refuse -= 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, "up", link)),
            asyncio.create_task(self._pump(up_reader, writer, "down", link)),
        ]
        for task in link.tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._links.append(link)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        link: _Link,
    ) -> None:
        gate = self._open[direction]
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self.received[direction] += len(data)
                self.held[direction] += len(data)
                try:
                    await gate.wait()
                finally:
                    self.held[direction] -= len(data)
                if direction == "down":
                    link.downstream_bytes += data
                    self.transcript += data
                writer.write(data)
                await writer.drain()
        # One side finished: end the other one as well.
        link.client.transport.abort()
        link.upstream.transport.abort()
