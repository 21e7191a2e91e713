"""Fixtures: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from PIGEON_TEST_POSTGRES_URL (default: the local server's
``test`` database). Tests make their own database beside it and drop it at
the end. When PostgreSQL is not reachable the tests fail; they never skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from pigeon.api.app import create_app
from pigeon.bootstrap import Container, build
from pigeon.config import Settings
from pigeon.storage import migrate
from pigeon.storage.engine import create_engine
from pigeon.storage.schema import metadata
from tests.support import FakeClock, Outbox, migrated_sqlite

POSTGRES_URL = os.environ.get(
    "PIGEON_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _dsn(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    base = make_url(POSTGRES_URL)
    name = f"pigeon_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(_dsn(base))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        engine = create_engine(base.set(database=name).render_as_string(hide_password=False))
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    async def drop() -> None:
        conn = await asyncpg.connect(_dsn(base))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run_in_thread(create)
    yield base.set(database=name).render_as_string(hide_password=False)
    _run_in_thread(drop)


def _run_in_thread(coroutine_function: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion on a loop of its own (a test loop may be running)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine_function()).result()


async def _truncate(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database on each engine in turn."""
    if request.param == "sqlite":
        return await migrated_sqlite(tmp_path / "pigeon.db")
    url = str(request.getfixturevalue("postgres_url"))
    await _truncate(url)
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        secret_key="test-secret-key",
        auto_migrate=False,
        # The default allows one code per 30 s per number; tests register several
        # devices of one number in a row, so they get a burst of five instead.
        send_code_limit_per_number="5/minute;10/day",
        # Cheap PIN hashing keeps the suite fast; production uses the defaults.
        pin_hash_time_cost=1,
        pin_hash_memory_kib=64,
        pin_hash_parallelism=1,
    )


@pytest.fixture
async def container(settings: Settings, clock: FakeClock) -> AsyncIterator[Container]:
    container = build(settings, clock=clock)
    yield container
    await container.close()


@pytest.fixture
async def app(settings: Settings, container: Container) -> AsyncIterator[FastAPI]:
    app = create_app(settings, container)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://pigeon.test") as client:
        yield client


@pytest.fixture
def outbox(settings: Settings) -> Outbox:
    return Outbox(settings.data_dir / "sms-outbox.jsonl")
