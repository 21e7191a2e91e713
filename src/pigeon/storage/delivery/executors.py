"""Running one statement on a connection, whatever the connection is.

The delivery classes hold SQL and shape results; an executor only runs a
statement and hands back plain rows (tuples of driver values) or a row count.
Three connections need one:

- ``Sqlite3Executor``: the sqlite3 connection of SQLite's batch writer, called
  on the event loop's thread while the batch holds the write lock.
- ``SqlAlchemyExecutor``: any SQLAlchemy ``AsyncConnection`` (SQLite's other
  units of work), through ``exec_driver_sql``, which skips the expression
  layer but keeps the unit of work's transaction and error handling.
- ``AsyncpgExecutor``: PostgreSQL, on the asyncpg connection itself once
  SQLAlchemy has begun the transaction.

Parameters are positional: ``?`` on SQLite, ``$1, $2, ...`` on PostgreSQL.
Errors leave as ``StorageError`` (or SQLAlchemy's ``DBAPIError``, which the
unit of work turns into one).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.storage.asyncpg_reads import ASYNCPG_ERRORS, read_only_driver, storage_error

Row = Sequence[Any]


class Executor(Protocol):
    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Row]:
        """Run ``sql``; its rows."""
        ...

    async def execute(self, sql: str, args: Sequence[Any]) -> int:
        """Run ``sql``; how many rows it changed."""
        ...

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per row of arguments."""
        ...


class Sqlite3Executor:
    """Statements on a sqlite3 connection, synchronously (they return in microseconds)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Row]:
        try:
            return self._raw.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc

    async def execute(self, sql: str, args: Sequence[Any]) -> int:
        try:
            return self._raw.execute(sql, args).rowcount
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._raw.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc


class SqlAlchemyExecutor:
    """Statements through a SQLAlchemy connection's driver cursor, in its transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Row]:
        return (await self._conn.exec_driver_sql(sql, tuple(args))).all()

    async def execute(self, sql: str, args: Sequence[Any]) -> int:
        return int((await self._conn.exec_driver_sql(sql, tuple(args))).rowcount)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.exec_driver_sql(sql, [tuple(row) for row in rows])


class AsyncpgExecutor:
    """Statements on the asyncpg connection of a SQLAlchemy ``AsyncConnection``.

    SQLAlchemy begins its transaction lazily, with the first statement. So the
    first statement goes through SQLAlchemy (which sends BEGIN before it), and
    once the transaction is open the rest go to the asyncpg connection itself,
    in the same transaction: no extra round trip for the BEGIN, and none of
    SQLAlchemy's per-statement work after it. A read-only unit has no
    transaction to begin, so all its statements go to asyncpg. The
    connection's type codecs are SQLAlchemy's (JSON columns arrive decoded).
    """

    __slots__ = ("_conn", "_driver")

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._driver: Any = read_only_driver(conn)

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Row]:
        if self._driver is None:
            rows = (await self._conn.exec_driver_sql(sql, tuple(args))).all()
            await self._take_driver()
            return rows
        try:
            result: Sequence[Row] = await self._driver.fetch(sql, *args)
        except ASYNCPG_ERRORS as exc:
            raise storage_error(exc) from exc
        return result

    async def execute(self, sql: str, args: Sequence[Any]) -> int:
        if self._driver is None:
            count = (await self._conn.exec_driver_sql(sql, tuple(args))).rowcount
            await self._take_driver()
            return int(count)
        try:
            status: str = await self._driver.execute(sql, *args)
        except ASYNCPG_ERRORS as exc:
            raise storage_error(exc) from exc
        tail = status.rsplit(" ", 1)[-1]  # "DELETE 3"; "INSERT 0 3"
        return int(tail) if tail.isdigit() else 0

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._driver is None:
            await self._conn.exec_driver_sql(sql, [tuple(row) for row in rows])
            await self._take_driver()
            return
        try:
            await self._driver.executemany(sql, rows)
        except ASYNCPG_ERRORS as exc:
            raise storage_error(exc) from exc

    async def _take_driver(self) -> None:
        raw = await self._conn.get_raw_connection()
        self._driver = raw.driver_connection
