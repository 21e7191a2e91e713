"""Argon2id PIN hashing, run in worker threads so the event loop never stalls."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


class Argon2PinHasher:
    """Each hash costs ~100 ms of CPU and 64 MiB by default; a semaphore caps how many run."""

    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, concurrency: int
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, pin: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, pin)

    async def verify(self, pin_hash: str, pin: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, pin_hash, pin)

    def _verify(self, pin_hash: str, pin: str) -> bool:
        try:
            return bool(self._hasher.verify(pin_hash, pin))
        except (VerificationError, InvalidHashError):
            return False
