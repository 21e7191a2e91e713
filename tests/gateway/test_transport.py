"""The coalescing transport under the WebSocket protocol: fewer writes, same bytes, same order."""

from __future__ import annotations

import asyncio
import socket

from pigeon.gateway.transport import CoalescingTransport


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
