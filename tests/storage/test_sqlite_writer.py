"""The group committer's SQLite unit of work: its write lock, taken on the loop or waited for."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from pigeon.domain.ids import new_id
from pigeon.domain.models import User
from pigeon.storage.sqlite_writer import SqliteWriter
from tests.storage.sqlite_support import T0, add_user
from tests.support import migrated_sqlite


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    path = tmp_path / "pigeon.db"
    await migrated_sqlite(path)
    return path


async def add_then_fail(writer: SqliteWriter, phone: str) -> None:
    async with writer() as uow:
        await uow.users.add(User(id=new_id(), phone=phone, created_at=T0))
        raise RuntimeError("the service changed its mind")


def phones(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT phone FROM users ORDER BY phone")]


async def test_a_batch_commits_when_no_other_writer_holds_the_lock(database: Path) -> None:
    writer = SqliteWriter(f"sqlite+aiosqlite:///{database}")
    try:
        await add_user(writer, "+14155550001")
        await add_user(writer, "+14155550002")
    finally:
        writer.close()
    assert phones(database) == ["+14155550001", "+14155550002"]


async def test_a_batch_waits_for_another_writer_without_blocking_the_loop(
    database: Path,
) -> None:
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer (a purge, say) holds the lock
    writer = SqliteWriter(f"sqlite+aiosqlite:///{database}")
    try:
        batch = asyncio.create_task(add_user(writer, "+14155550001"))
        longest = 0.0
        for _ in range(20):  # the loop keeps running while the batch waits
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            longest = max(longest, time.perf_counter() - started)
        assert longest < 0.5
        assert not batch.done()
        other.execute("COMMIT")
        await asyncio.wait_for(batch, 5)
        await add_user(writer, "+14155550002")  # and the next one takes the fast path again
    finally:
        other.close()
        writer.close()
    assert phones(database) == ["+14155550001", "+14155550002"]


async def test_units_at_once_share_commits_and_a_failing_one_undoes_only_its_own(
    database: Path,
) -> None:
    writer = SqliteWriter(f"sqlite+aiosqlite:///{database}")

    try:
        outcomes = await asyncio.gather(
            *(add_user(writer, f"+1415555{n:04d}") for n in range(0, 20, 2)),
            *(add_then_fail(writer, f"+1415555{n:04d}") for n in range(1, 20, 2)),
            return_exceptions=True,
        )
        # Each unit's commit() returned only once its rows were committed: another
        # connection sees them now, and none of the failed units' rows.
        assert phones(database) == [f"+1415555{n:04d}" for n in range(0, 20, 2)]
        await add_user(writer, "+14155559999")  # the writer goes on after all that
    finally:
        writer.close()
    assert [type(o) for o in outcomes] == [type(None)] * 10 + [RuntimeError] * 10
    assert phones(database)[-1] == "+14155559999"


async def test_a_failing_first_unit_of_a_group_undoes_only_its_own(database: Path) -> None:
    """The first unit has the transaction to itself (no savepoint): its rollback is its own."""
    writer = SqliteWriter(f"sqlite+aiosqlite:///{database}")

    try:
        with pytest.raises(RuntimeError):
            await add_then_fail(writer, "+14155550000")  # alone: the whole transaction rolls back
        outcomes = await asyncio.gather(
            add_then_fail(writer, "+14155550001"),  # first of the group, the others queue behind it
            add_user(writer, "+14155550002"),
            add_user(writer, "+14155550003"),
            return_exceptions=True,
        )
    finally:
        writer.close()
    assert [type(o) for o in outcomes] == [RuntimeError, type(None), type(None)]
    assert phones(database) == ["+14155550002", "+14155550003"]
