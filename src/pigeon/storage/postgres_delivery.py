"""The committer's delivery queries on the asyncpg connection (see ``driver_delivery``).

The statements run on the same connection and in the same transaction as the
unit of work's SQLAlchemy ones. SQLAlchemy begins that transaction with its
first statement, so until one has run here, statements go through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.services.ports import StorageError
from pigeon.storage.delivery import Statement
from pigeon.storage.driver_delivery import COLUMNS, DriverDeliveryRepository, insert_sql

T = TypeVar("T")

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
            return await self._beginning(super()._rows(statement, params))
        rows: Sequence[Any] = await self._call("fetch", *self._positional(statement, params))
        return rows

    async def _rowcount(self, statement: Statement, params: Mapping[str, Any]) -> int:
        if self._driver is None:
            return await self._beginning(super()._rowcount(statement, params))
        status: str = await self._call("execute", *self._positional(statement, params))
        return int(status.rsplit(" ", 1)[-1])  # "DELETE 3"

    async def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        if self._driver is None:
            await self._beginning(self._conn.exec_driver_sql("SELECT 1"))
        await self._call("executemany", _INSERTS[table], rows)

    async def _beginning(self, first: Awaitable[T]) -> T:
        """Run the transaction's first statement through SQLAlchemy, then take its driver."""
        result = await first
        raw = await self._conn.get_raw_connection()
        self._driver = raw.driver_connection
        return result

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        try:
            return await getattr(self._driver, method)(sql, *args)
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc

    def _positional(
        self, statement: Statement, params: Mapping[str, Any]
    ) -> tuple[Any, ...]:  # the SQL, then its arguments in order
        compiled = _compiled.get(id(statement))
        if compiled is None:
            result = statement.compile(dialect=self._conn.dialect)
            compiled = _compiled[id(statement)] = (
                result.string,
                tuple(result.positiontup or ()),
            )
        sql, names = compiled
        return (sql, *(params[name] for name in names))


def _storage_error(exc: BaseException) -> StorageError:
    """The ports' error for a driver's, as ``uow.raise_as_storage_error`` makes it."""
    text = str(exc)
    return StorageError(text.splitlines()[0] if text else repr(exc))
