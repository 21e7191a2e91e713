"""SQLite's read-only units of work, run on the event loop's thread.

Through aiosqlite each statement of a read crosses to a worker thread and
back several times (begin, execute, fetch, close, rollback), and each
crossing costs the process a thread wake-up and a turn of the event loop.
A device connecting reads its token, its contacts (for presence) and the
first page of its queue: three read units, about fifteen crossings, most
of the ~2.2 ms of CPU each connection cost in a reconnect storm.

In WAL mode a reader takes no lock and waits for no writer, and Pigeon's
reads are by key and bounded by pages, so each statement returns in
microseconds: here they run on the loop's thread directly, as the one
writer's statements already do (``storage/sqlite_writer.py``). Purges and
other housekeeping, which may scan, stay on the aiosqlite pool.
"""

from __future__ import annotations

import sqlite3
from types import TracebackType
from typing import Self

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from pigeon.services.ports import StorageUnreachable
from pigeon.storage.engine import create_sqlite_reader
from pigeon.storage.sqlite_writer import bind_inline
from pigeon.storage.uow import BoundRepositories, raise_as_storage_error


class SqliteReaders:
    """Hands out read-only units of work over a few long-lived connections."""

    def __init__(self, url: str, keep: int) -> None:
        self._engine = create_sqlite_reader(url, keep)

    def __call__(self) -> SqliteReadUnitOfWork:
        return SqliteReadUnitOfWork(self)

    def connect(self) -> Connection:
        return self._engine.connect()

    def close(self) -> None:
        self._engine.dispose()


class SqliteReadUnitOfWork(BoundRepositories):
    def __init__(self, readers: SqliteReaders) -> None:
        self._readers = readers
        self._connection: Connection | None = None

    async def __aenter__(self) -> Self:
        try:
            self._connection = self._readers.connect()
            # A plain BEGIN on the driver (a snapshot for the unit's reads, no
            # lock), then SQLAlchemy takes the transaction over, as the writer does.
            raw = self._connection.connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            raw.execute("BEGIN")
            self._connection.begin()
        except (DBAPIError, OSError, sqlite3.Error) as exc:
            if self._connection is not None:
                self._connection.invalidate()
                self._connection.close()
                self._connection = None
            raise StorageUnreachable(f"cannot open the database: {exc}") from exc
        bind_inline(self, self._connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        assert connection is not None
        try:
            if connection.in_transaction():
                connection.rollback()  # a read-only unit has nothing to keep
        except DBAPIError:
            connection.invalidate()  # broken: the pool opens a fresh one
        finally:
            connection.close()
        raise_as_storage_error(exc)

    async def commit(self) -> None:
        """Nothing to commit: the unit only read."""
