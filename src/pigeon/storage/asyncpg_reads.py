"""Selects run on asyncpg itself, for the reads every connecting device makes.

On PostgreSQL a select through SQLAlchemy's async bridge costs ~120 µs of
CPU; the same select on the asyncpg connection ~45 µs. A device that
connects reads its token, its contacts and who of them may see it online,
and in a reconnect storm thousands do at once, so those reads go to the
driver (docs/performance.md, "Third round").

Only in PostgreSQL's read-only units of work: they run outside a transaction
(``uow.read_only_options``), so a statement on the driver misses no
transaction of SQLAlchemy's. The statement is still written once, in Core,
and compiled once for asyncpg; a repository runs it as a ``ConnectRead``,
which picks the path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable

from pigeon.services.ports import StorageError
from pigeon.storage.engine import READ_ONLY

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
# What a statement on asyncpg itself raises when it fails; as ``storage_error`` says.
ASYNCPG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def storage_error(exc: BaseException) -> StorageError:
    """A driver's error as the ports' ``StorageError``: its first line."""
    text = str(exc)
    return StorageError(text.splitlines()[0] if text else repr(exc))


class AsyncpgSelect:
    """A Core select compiled once for asyncpg; its parameters are passed by name."""

    __slots__ = ("_params", "_sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self._sql = str(compiled)
        positions = getattr(compiled, "positiontup", None) or []  # a SQLCompiler's
        # Literals (``sa.literal("p")``) are parameters too, with their values.
        self._params = [(name, compiled.params[name]) for name in positions]

    async def fetch(self, driver: Any, **params: Any) -> list[asyncpg.Record]:
        args = [params.get(name, value) for name, value in self._params]
        try:
            rows: list[asyncpg.Record] = await driver.fetch(self._sql, *args)
        except ASYNCPG_ERRORS as exc:
            raise storage_error(exc) from exc
        return rows


def read_only_driver(conn: AsyncConnection) -> Any | None:
    """The asyncpg connection under ``conn`` if it serves a read-only PostgreSQL unit.

    SQLite's readers hand repositories a connection of their own
    (``sqlite_readers.py``), which has no ``sync_connection``.
    """
    sync = getattr(conn, "sync_connection", None)
    if sync is None or sync.dialect.name != "postgresql":
        return None
    if not sync.get_execution_options().get(READ_ONLY):
        return None
    return sync.connection.driver_connection


def among(column: sa.ColumnElement[Any], values: sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
    """``column`` is one of a list parameter's values, as ``ConnectRead.of_lists`` built it."""
    if values.expanding:
        return column.in_(values)
    return column == sa.any_(values)


ListParameter = Callable[[str], "sa.BindParameter[Any]"]


class ConnectRead:
    """A select every connect makes: on asyncpg itself in PostgreSQL's read-only units,
    through SQLAlchemy everywhere else. Rows come back as mappings by column name.

    ``on_driver`` is the same select written for asyncpg, where it must differ
    (an array where SQLAlchemy expands a list into an ``IN``).
    """

    __slots__ = ("_on_driver", "_statement")

    def __init__(self, statement: Executable, on_driver: ClauseElement | None = None) -> None:
        self._statement = statement
        same = cast(ClauseElement, statement)  # a select is both
        self._on_driver = AsyncpgSelect(on_driver if on_driver is not None else same)

    @classmethod
    def of_lists(cls, build: Callable[[ListParameter], Executable]) -> ConnectRead:
        """A select with lists of strings as parameters, written once as ``build(listed)``:
        ``listed(name)`` is an expanding IN's parameter through SQLAlchemy, an array
        on asyncpg (compare them with ``among``)."""
        return cls(
            build(lambda name: sa.bindparam(name, expanding=True)),
            cast(ClauseElement, build(lambda name: sa.bindparam(name, type_=ARRAY(sa.String)))),
        )

    async def rows(self, conn: AsyncConnection, **params: Any) -> Sequence[Mapping[Any, Any]]:
        driver = read_only_driver(conn)
        if driver is not None:
            return await self._on_driver.fetch(driver, **params)
        return (await conn.execute(self._statement, params)).mappings().all()
