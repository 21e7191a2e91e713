"""How many new connections may be in their handshake at once.

``PIGEON_WS_MAX_CONCURRENT_HANDSHAKES`` sets it. A node's death or a deploy
sends thousands of devices to the nodes that stay, all at once. Each
newcomer costs a few database reads: its token, its contacts (presence), the
first page of its queue. Unbounded, thousands of them queue for the database
pool, and a command of a device that was already connected waits behind the
whole queue (a ``getChats`` waited 14 s behind 5,000 newcomers). The gate
lets a bounded number of newcomers through at a time, from authentication
until their first page of queued events was read; the others wait their
turn holding nothing but their socket.
"""

from __future__ import annotations

import asyncio


class Admission:
    """A counting gate; ``enter`` waits for a permit."""

    __slots__ = ("_semaphore",)

    def __init__(self, limit: int) -> None:
        self._semaphore = asyncio.Semaphore(limit)

    async def enter(self) -> Permit:
        await self._semaphore.acquire()
        return Permit(self._semaphore)


class Permit:
    """One newcomer's place in the handshake; ``release`` may be called more than once."""

    __slots__ = ("_semaphore",)

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None
