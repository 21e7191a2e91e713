"""SQLite's one writer: every write unit of work of the process, the group committer's too.

SQLite takes one writer at a time. Units of work that each took the write
lock on a pooled connection waited for one another inside SQLite (a busy
timeout, in worker threads): 200 sign-ups 50 at a time saw p99 of up to
2 s, and past the 5 s timeout a request failed with 503. Here they queue in
the process instead, first come first served, for one long-lived connection:
nobody waits on the lock, and nobody times out while the database is healthy.

Units share commits. The first unit of a group opens the writer's
transaction; each later one runs in a savepoint of it. A unit's
``commit()`` releases its savepoint (if any), lets the next unit in, and
returns once the transaction holding it has committed. The COMMIT
(and its fsync) is queued behind the units already waiting, so every unit
that arrived while the last COMMIT ran shares the next one: with 50
sign-ups at once each paid for three fsyncs in a row (a code request, a
verify's attempt, its account), and the last one waited for 150. A unit
that fails rolls back to its savepoint and leaves the others alone; a
COMMIT that fails fails every unit in it.

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

from sqlalchemy import Connection, NestedTransaction
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


def bind_inline(unit: BoundRepositories, connection: Connection) -> None:
    """Bind ``unit``'s repositories to ``connection``, answered on the loop's thread.

    The delivery statements go to the same connection's sqlite3 driver directly.
    """
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    inline = cast(AsyncConnection, _InlineConnection(connection))
    unit._bind(inline, SqliteDelivery(Sqlite3Executor(raw)))


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
        # Units whose savepoints were released in the open transaction, waiting for its COMMIT.
        self._group: list[asyncio.Future[None]] = []
        self._flush: asyncio.Task[None] | None = None

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
        connection = self._connection
        if broken and connection is not None:
            self._fail_group(StorageError("the writer's connection broke before its commit"))
            connection.invalidate()
            connection.close()
            self._connection = None
        elif connection is not None and not self._group and connection.in_transaction():
            connection.rollback()  # nothing to keep: do not hold SQLite's lock for nobody
        self._lock.release()
        if self._group and (self._flush is None or self._flush.done()):
            # Queued behind the units already waiting for the lock: they join this commit.
            self._flush = asyncio.get_running_loop().create_task(self._commit_group())

    def join_group(self) -> asyncio.Future[None]:
        """The caller's savepoint is released: a future for the commit that will hold it."""
        future = asyncio.get_running_loop().create_future()
        self._group.append(future)
        return future

    async def _commit_group(self) -> None:
        async with self._lock:
            group, self._group = self._group, []
            connection = self._connection
            if not group or connection is None:
                return
            try:
                await asyncio.to_thread(connection.commit)  # the fsync, off the loop
            except (DBAPIError, OSError, sqlite3.Error) as exc:
                error = StorageError(f"commit failed: {exc}")
                with contextlib.suppress(DBAPIError, sqlite3.Error):
                    connection.rollback()
                for future in group:
                    if not future.done():
                        future.set_exception(error)
                return
            for future in group:
                if not future.done():
                    future.set_result(None)

    def _fail_group(self, error: StorageError) -> None:
        group, self._group = self._group, []
        for future in group:
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        if self._connection is not None:
            if self._group and self._connection.in_transaction():
                self._connection.commit()  # what was answered as committing, at shutdown
                for future in self._group:
                    if not future.done():
                        future.set_result(None)
                self._group = []
            self._connection.close()
            self._connection = None
        self._engine.dispose()


class SqliteWriterUnitOfWork(BoundRepositories):
    def __init__(self, writer: SqliteWriter) -> None:
        self._writer = writer
        self._connection: Connection | None = None
        self._savepoint: NestedTransaction | None = None

    async def __aenter__(self) -> Self:
        try:
            self._connection = await self._writer.acquire()
        except (DBAPIError, OSError) as exc:
            raise StorageUnreachable(f"cannot open the database: {exc}") from exc
        raw = self._connection.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        try:
            if not self._connection.in_transaction():
                # The first unit of a group has the transaction to itself: if it
                # fails, rolling all of it back undoes this unit only. A savepoint
                # (two statements and SQLAlchemy's nesting, ~6 % of the loop's
                # time at 1,000 msg/s, where most batches commit alone) is for
                # the units that join it.
                if not _begin_unless_busy(raw):
                    await asyncio.to_thread(_begin_waiting, raw)
                self._connection.begin()  # SQLAlchemy takes over the driver's transaction
            else:
                self._savepoint = self._connection.begin_nested()
        except (DBAPIError, OSError, sqlite3.Error) as exc:
            self._writer.release(broken=True)
            raise StorageError(f"cannot begin a transaction: {exc}") from exc
        bind_inline(self, self._connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:  # not committed: undo this unit's work only
            broken = False
            try:
                if self._savepoint is None:
                    self._connection.rollback()  # the transaction held this unit alone
                elif self._savepoint.is_active:
                    self._savepoint.rollback()
            except DBAPIError:
                broken = True
            finally:
                self._savepoint = None
                self._writer.release(broken=broken)
                self._connection = None
        raise_as_storage_error(exc)

    async def commit(self) -> None:
        """Returns once the transaction holding this unit has committed (its fsync)."""
        assert self._connection is not None
        try:
            if self._savepoint is not None:
                self._savepoint.commit()  # RELEASE: the work joins the writer's transaction
        except DBAPIError:
            self._savepoint = None
            self._writer.release(broken=True)
            self._connection = None
            raise
        committed = self._writer.join_group()
        self._savepoint = None
        self._connection = None
        self._writer.release()  # the next unit may run; the commit is queued behind it
        await asyncio.shield(committed)
