"""SQLite's one writer: every write unit of work of the process, the group committer's too.

SQLite takes one writer at a time. Units of work that each took the write
lock on a pooled connection waited for one another inside SQLite (a busy
timeout, in worker threads): 200 sign-ups 50 at a time saw p99 of up to
2 s, and past the 5 s timeout a request failed with 503. Here they queue in
the process instead, first come first served, for one long-lived connection:
nobody waits on the lock, and nobody times out while the database is healthy.

A unit takes SQLite's write lock (``BEGIN IMMEDIATE``) on the event loop's
thread, runs its statements there, and commits (the fsync) in a worker
thread. Through aiosqlite every statement crosses to its worker thread and
back several times (cursor, execute, fetch, close); here, holding the lock,
no statement can wait for another writer and WAL readers never block, so
each returns in microseconds. Only when another process (``pigeon admin``,
a housekeeping unit on the pool) holds the lock does a unit wait for it, in
a worker thread. The usual repositories run on it, through a connection
that answers their ``await conn.execute(...)`` at once; the delivery
statements go to the sqlite3 connection directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self, cast

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.services.ports import StorageError, StorageUnreachable
from pigeon.storage.delivery import Sqlite3Executor, SqliteDelivery
from pigeon.storage.engine import BUSY_TIMEOUT_MS, create_sqlite_writer
from pigeon.storage.uow import BoundRepositories, raise_as_storage_error


class _InlineConnection:
    """What the repositories need of an AsyncConnection, answered synchronously."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect = connection.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._connection.execute(statement, parameters)

    @contextlib.asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        with self._connection.begin_nested():
            yield


def _begin_unless_busy(raw: sqlite3.Connection) -> bool:
    """Take the write lock on the loop's thread if no other writer holds it.

    Nearly always the lock is free and BEGIN IMMEDIATE returns in
    microseconds; a thread hop for it cost each batch ~2 ms of waiting for
    the busy loop to come back (a batch at 1,000 msg/s took 4.8 ms with the
    hop, 3.2 ms without: docs/performance.md). The connection's busy
    timeout is zero, so a held lock fails at once instead of blocking the
    loop.
    """
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
            raise
        return False
    return True


def _begin_waiting(raw: sqlite3.Connection) -> None:
    """Wait (up to the usual busy timeout) for another writer's lock: in a worker thread."""
    raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        raw.execute("BEGIN IMMEDIATE")
    finally:
        raw.execute("PRAGMA busy_timeout=0")


class SqliteWriter:
    """Hands out write units of work, one at a time, over one long-lived connection."""

    def __init__(self, url: str) -> None:
        self._engine = create_sqlite_writer(url)
        self._lock = asyncio.Lock()  # one unit at a time on the one connection, in arrival order
        self._connection: Connection | None = None

    def __call__(self) -> SqliteWriterUnitOfWork:
        return SqliteWriterUnitOfWork(self)

    async def acquire(self) -> Connection:
        await self._lock.acquire()
        try:
            if self._connection is None or self._connection.invalidated:
                self._connection = await asyncio.to_thread(self._engine.connect)
        except BaseException:
            self._lock.release()
            raise
        return self._connection

    def release(self, broken: bool = False) -> None:
        if broken and self._connection is not None:
            self._connection.invalidate()
            self._connection.close()
            self._connection = None
        self._lock.release()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._engine.dispose()


class SqliteWriterUnitOfWork(BoundRepositories):
    def __init__(self, writer: SqliteWriter) -> None:
        self._writer = writer
        self._connection: Connection | None = None

    async def __aenter__(self) -> Self:
        try:
            self._connection = await self._writer.acquire()
        except (DBAPIError, OSError) as exc:
            raise StorageUnreachable(f"cannot open the database: {exc}") from exc
        raw = self._connection.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        try:
            if not _begin_unless_busy(raw):
                await asyncio.to_thread(_begin_waiting, raw)
            self._connection.begin()  # SQLAlchemy takes over the driver's transaction
        except (DBAPIError, OSError, sqlite3.Error) as exc:
            self._writer.release(broken=True)
            raise StorageError(f"cannot begin a transaction: {exc}") from exc
        inline = cast(AsyncConnection, _InlineConnection(self._connection))
        # The hot path's statements go to the same connection's driver directly.
        self._bind(inline, SqliteDelivery(Sqlite3Executor(raw)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        broken = False
        try:
            if self._connection.in_transaction():
                self._connection.rollback()
        except DBAPIError:
            broken = True
        finally:
            self._writer.release(broken=broken)
            self._connection = None
        raise_as_storage_error(exc)

    async def commit(self) -> None:
        assert self._connection is not None
        await asyncio.to_thread(self._connection.commit)  # the fsync, off the loop
