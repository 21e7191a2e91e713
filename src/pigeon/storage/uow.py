"""The SQL unit of work: one connection, one transaction, all repositories."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pigeon.services.ports import DeliveryRepository, StorageError, StorageUnreachable
from pigeon.storage.broadcasts import SqlBroadcastRepository
from pigeon.storage.changes import SqlMessageChangeRepository
from pigeon.storage.chats import SqlChatRepository
from pigeon.storage.engine import READ_ONLY
from pigeon.storage.erasure import SqlErasureRepository
from pigeon.storage.media import SqlMediaRepository
from pigeon.storage.people import SqlPeopleRepository
from pigeon.storage.push import SqlPushRepository
from pigeon.storage.recovery_emails import SqlRecoveryEmailRepository
from pigeon.storage.repositories import SqlCodeRepository, SqlDeviceRepository, SqlUserRepository
from pigeon.storage.statuses import SqlStatusRepository

# How a unit of work gets its delivery repository for its connection: the
# dialect's class on the right executor, as ``bootstrap`` chose.
DeliveryFactory = Callable[[AsyncConnection], DeliveryRepository]


class BoundRepositories:
    """Every repository, bound to one transaction's connection (shared by the units of work)."""

    users: SqlUserRepository
    devices: SqlDeviceRepository
    codes: SqlCodeRepository
    chats: SqlChatRepository
    delivery: DeliveryRepository
    media: SqlMediaRepository
    people: SqlPeopleRepository
    push: SqlPushRepository
    changes: SqlMessageChangeRepository
    erasure: SqlErasureRepository
    broadcasts: SqlBroadcastRepository
    statuses: SqlStatusRepository
    recovery_emails: SqlRecoveryEmailRepository

    def _bind(self, conn: AsyncConnection, delivery: DeliveryRepository) -> None:
        self.users = SqlUserRepository(conn)
        self.devices = SqlDeviceRepository(conn)
        self.codes = SqlCodeRepository(conn)
        self.chats = SqlChatRepository(conn)
        self.delivery = delivery
        self.media = SqlMediaRepository(conn)
        self.people = SqlPeopleRepository(conn)
        self.push = SqlPushRepository(conn)
        self.changes = SqlMessageChangeRepository(conn)
        self.erasure = SqlErasureRepository(conn)
        self.broadcasts = SqlBroadcastRepository(conn)
        self.statuses = SqlStatusRepository(conn)
        self.recovery_emails = SqlRecoveryEmailRepository(conn)


def raise_as_storage_error(exc: BaseException | None) -> None:
    """Turn a driver error that ended a transaction into the ports' StorageError."""
    if isinstance(exc, DBAPIError):
        raise StorageError(str(exc.orig or exc).splitlines()[0]) from exc


class SqlUnitOfWork(BoundRepositories):
    """A unit of work on a pooled connection.

    A read-only unit's ``engine`` carries ``read_only_options``. On PostgreSQL
    it then has no transaction at all: nothing to begin and nothing to roll
    back; returning its connection makes a round trip only when the pool is
    full and closes it.
    """

    def __init__(
        self, engine: AsyncEngine, delivery: DeliveryFactory, *, read_only: bool = False
    ) -> None:
        self._engine = engine
        self._delivery = delivery
        self._transactional = not (read_only and engine.dialect.name == "postgresql")
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        try:
            self._conn = await self._engine.connect()
            if self._transactional:
                await self._conn.begin()
        except (DBAPIError, OSError) as exc:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
            raise StorageUnreachable(f"cannot reach the database: {exc}") from exc
        except sa_exc.TimeoutError as exc:  # every pooled connection busy for pool_timeout
            raise StorageUnreachable("no database connection became free in time") from exc
        self._bind(self._conn, self._delivery(self._conn))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        conn, self._conn = self._conn, None
        # Shielded: a task cancelled here (a socket closing while its backlog is
        # read) still rolls back and returns its connection whole, instead of
        # leaving the pool a half-reset connection and a logged traceback. An
        # autocommit connection needs it too: one the full pool does not take
        # back (an overflow connection) is closed, a round trip to PostgreSQL.
        release = asyncio.ensure_future(_release(conn))
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            await asyncio.wait([release])
            raise
        raise_as_storage_error(exc)

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()


def read_only_options(dialect: str) -> dict[str, object]:
    """The options of the engine that read-only units of work connect through.

    On PostgreSQL they run outside a transaction: under READ COMMITTED each
    statement takes its own snapshot anyway, so BEGIN and ROLLBACK were two
    round trips that changed nothing (a device connecting reads in three such
    units). On SQLite the transaction is a plain BEGIN: one snapshot for the
    unit's reads.
    """
    if dialect == "postgresql":
        return {READ_ONLY: True, "isolation_level": "AUTOCOMMIT"}
    return {READ_ONLY: True}


async def _release(conn: AsyncConnection) -> None:
    try:
        if conn.in_transaction():
            await conn.rollback()
    except DBAPIError:
        await conn.invalidate()  # the connection is broken: drop it from the pool
    finally:
        await conn.close()
