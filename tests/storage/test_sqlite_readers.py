"""SQLite's read-only units on the event loop's thread: no lock waited for, no unit queued."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pigeon.storage.sqlite_readers import SqliteReaders
from pigeon.storage.sqlite_writer import SqliteWriter
from tests.storage.sqlite_support import add_user
from tests.support import migrated_sqlite


@pytest.fixture
async def url(tmp_path: Path) -> str:
    return await migrated_sqlite(tmp_path / "pigeon.db")


async def test_a_read_sees_what_is_committed_while_another_writer_holds_the_lock(
    url: str, tmp_path: Path
) -> None:
    writer, readers = SqliteWriter(url), SqliteReaders(url, keep=2)
    other = sqlite3.connect(tmp_path / "pigeon.db", isolation_level=None)
    try:
        await add_user(writer, "+14155550001")
        other.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
        other.execute(
            "INSERT INTO users (id, phone, created_at) VALUES ('u2', '+14155550002', '2026-03-01')"
        )
        async with readers() as uow:
            found = await uow.users.get_by_phone("+14155550001")
            uncommitted = await uow.users.get_by_phone("+14155550002")
        other.execute("ROLLBACK")
    finally:
        other.close()
        writer.close()
        readers.close()
    assert found is not None
    assert uncommitted is None


async def test_more_reads_at_once_than_kept_connections_all_run(url: str) -> None:
    """Past its kept connections the pool opens more: a unit never waits (on the loop's
    thread, a wait would stop the whole process)."""
    writer, readers = SqliteWriter(url), SqliteReaders(url, keep=1)
    started = asyncio.Event()
    inside = 0

    async def read(phone: str) -> bool:
        nonlocal inside
        async with readers() as uow:
            inside += 1
            if inside == 5:
                started.set()
            await asyncio.wait_for(started.wait(), 5)  # all five hold a unit at once
            return await uow.users.get_by_phone(phone) is not None

    try:
        await add_user(writer, "+14155550001")
        results = await asyncio.gather(*(read("+14155550001") for _ in range(5)))
    finally:
        writer.close()
        readers.close()
    assert results == [True] * 5
