"""Lookups by key that share one read: those that arrive while a read runs go together.

Every device that connects looks up its token and who to tell it came online,
and in a reconnect storm hundreds do within a few milliseconds. Each lookup
alone costs a database connection's checkout and a round trip, more than the
rows it reads; gathered, a batch of them costs about what one did
(docs/performance.md, "Fifth round"). Nothing waits for a batch to fill: the
first lookup starts a read at once, and the lookups that arrive while it runs
are the next read. Alone, a lookup costs what it did before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Keys per read: bounds the statement (its parameters) and the rows it returns.
MOST_KEYS_PER_READ = 64


class BatchedLookup(Generic[K, V]):
    """``get(key)`` answers from a read of every key waiting with it.

    ``read(keys)`` returns what it found by key; a key it did not find gets
    ``default``. If the read fails, every lookup in it raises the read's error.
    Lookups are answered in the order they came, so callers acting on the
    answer (telling someone, say) act in that order too.
    """

    __slots__ = ("_default", "_most", "_read", "_reader", "_waiting")

    def __init__(
        self,
        read: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]],
        default: V,
        most: int = MOST_KEYS_PER_READ,
    ) -> None:
        self._read = read
        self._default = default
        self._most = most
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[V] = loop.create_future()
        self._waiting.append((key, answer))
        if self._reader is None:
            self._reader = loop.create_task(self._read_while_waited_for())
        return await answer

    async def _read_while_waited_for(self) -> None:
        batch: list[tuple[K, asyncio.Future[V]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
                asked = [(key, answer) for key, answer in batch if not answer.done()]
                if asked:
                    await self._answer(asked)
        except asyncio.CancelledError:  # the loop is stopping: nobody is left waiting
            for _, answer in batch + self._waiting:
                answer.cancel()
            self._waiting = []
            raise
        finally:
            self._reader = None

    async def _answer(self, asked: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            found = await self._read(list(dict.fromkeys(key for key, _ in asked)))
        except Exception as exc:  # each caller gets the read's error, as if it had read alone
            for _, answer in asked:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for key, answer in asked:
            if not answer.done():  # a caller cancelled meanwhile
                answer.set_result(found.get(key, self._default))
