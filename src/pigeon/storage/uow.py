"""The SQL unit of work: one connection, one transaction, all repositories."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pigeon.storage.repositories import SqlCodeRepository, SqlDeviceRepository, SqlUserRepository


class SqlUnitOfWork:
    users: SqlUserRepository
    devices: SqlDeviceRepository
    codes: SqlCodeRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        self._conn = await self._engine.connect()
        await self._conn.begin()
        self.users = SqlUserRepository(self._conn)
        self.devices = SqlDeviceRepository(self._conn)
        self.codes = SqlCodeRepository(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        try:
            if self._conn.in_transaction():
                await self._conn.rollback()
        finally:
            await self._conn.close()
            self._conn = None

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()
