"""The committer's delivery queries on the sqlite3 connection (see ``driver_delivery``)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.storage.delivery import Statement
from pigeon.storage.driver_delivery import COLUMNS, DriverDeliveryRepository

_INSERTS = {
    table: f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for table, columns in COLUMNS.items()
}


@functools.lru_cache(maxsize=256)  # a batch's rows share one time
def stored_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite dialect stores it: naive UTC, microseconds."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _text(statement: Statement) -> str:
    element = statement if isinstance(statement, sa.TextClause) else statement.element
    assert isinstance(element, sa.TextClause)
    return element.text  # sqlite3 takes SQLAlchemy's :name parameters as they are


class SqliteDeliveryRepository(DriverDeliveryRepository):
    def __init__(self, conn: AsyncConnection, raw: sqlite3.Connection) -> None:
        super().__init__(conn)
        self._raw = raw

    async def _rows(self, statement: Statement, params: Mapping[str, Any]) -> Sequence[Any]:
        return self._raw.execute(_text(statement), params).fetchall()

    async def _rowcount(self, statement: Statement, params: Mapping[str, Any]) -> int:
        return self._raw.execute(_text(statement), params).rowcount

    async def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        self._raw.executemany(_INSERTS[table], rows)

    def _time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def _stored_time(self, value: datetime) -> str:
        return stored_time(value)
