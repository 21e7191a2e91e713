"""The committer's delivery queries on the asyncpg connection (see ``driver_delivery``).

The statements run on the same connection and in the same transaction as the
unit of work's SQLAlchemy ones. SQLAlchemy begins that transaction with its
first statement, so until one has run here, statements go through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.services.ports import StorageError
from pigeon.storage.delivery import Statement
from pigeon.storage.driver_delivery import COLUMNS, DriverDeliveryRepository, insert_sql

_INSERTS = {table: insert_sql(table, lambda n: f"${n}") for table in COLUMNS}
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

# statement -> its SQL with $n placeholders, and the parameter names in order
_compiled: dict[int, tuple[str, tuple[str, ...]]] = {}


class PostgresDeliveryRepository(DriverDeliveryRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self._driver: Any = None  # the asyncpg connection, once the transaction has begun

    async def _rows(self, statement: Statement, params: Mapping[str, Any]) -> Sequence[Any]:
        if self._driver is None:
            rows = await super()._rows(statement, params)
            await self._take_driver()
            return rows
        sql, args = self._positional(statement, params)
        try:
            return await self._driver.fetch(sql, *args)  # type: ignore[no-any-return]
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc

    async def _rowcount(self, statement: Statement, params: Mapping[str, Any]) -> int:
        if self._driver is None:
            count = await super()._rowcount(statement, params)
            await self._take_driver()
            return count
        sql, args = self._positional(statement, params)
        try:
            status: str = await self._driver.execute(sql, *args)  # "DELETE 3"
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc
        return int(status.rsplit(" ", 1)[-1])

    async def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        if self._driver is None:
            await self._conn.exec_driver_sql("SELECT 1")  # begin the transaction
            await self._take_driver()
        try:
            await self._driver.executemany(_INSERTS[table], rows)
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc

    async def _take_driver(self) -> None:
        raw = await self._conn.get_raw_connection()
        self._driver = raw.driver_connection

    def _positional(self, statement: Statement, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        compiled = _compiled.get(id(statement))
        if compiled is None:
            result = statement.compile(dialect=self._conn.dialect)
            compiled = _compiled[id(statement)] = (
                result.string,
                tuple(result.positiontup or ()),
            )
        sql, names = compiled
        return sql, [params[name] for name in names]


def _storage_error(exc: BaseException) -> StorageError:
    """The ports' error for a driver's, as ``uow.raise_as_storage_error`` makes it."""
    text = str(exc)
    return StorageError(text.splitlines()[0] if text else repr(exc))
