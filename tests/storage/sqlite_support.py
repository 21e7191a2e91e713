"""What the tests of SQLite's one writer and of its readers share."""

from __future__ import annotations

from datetime import UTC, datetime

from pigeon.domain.ids import new_id
from pigeon.domain.models import User
from pigeon.storage.sqlite_writer import SqliteWriter

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


async def add_user(writer: SqliteWriter, phone: str) -> None:
    """A user, committed through the writer."""
    async with writer() as uow:
        await uow.users.add(User(id=new_id(), phone=phone, created_at=T0))
        await uow.commit()
