"""Migrations build exactly the schema in ``pigeon.storage.schema``, on both engines."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from pigeon.cli.main import app as cli
from pigeon.storage import migrate
from pigeon.storage.engine import create_engine
from pigeon.storage.schema import metadata
from tests.conftest import POSTGRES_URL

VERSION_TABLE = "alembic_version"


def all_revisions() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


async def _admin(sql: str) -> None:
    dsn = make_url(POSTGRES_URL).set(drivername="postgresql")
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    """An engine on a database with no tables at all (PostgreSQL: a throwaway database)."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
        yield engine
        await engine.dispose()
        return
    name = f"pigeon_migrations_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    engine = create_engine(
        make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    )
    try:
        yield engine
    finally:
        await engine.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


def _unquoted(default: str | None) -> str | None:
    """A reflected or rendered SQLite default without its parentheses and quotes."""
    if default is None:
        return None
    default = re.sub(r"^\((.*)\)$", r"\1", default)
    return re.sub(r"^'(.*)'$", r"\1", default)


def _defaults_differ(
    context: MigrationContext,
    inspected_column: sa.Column[Any],
    metadata_column: sa.Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Alembic's SQLite comparison mistakes ``DEFAULT ('')`` for a change; this one does not."""
    if context.dialect.name != "sqlite":
        return None  # Alembic's own comparison
    return _unquoted(inspected_default) != _unquoted(rendered_metadata_default)


async def schema_differences(engine: AsyncEngine) -> list[Any]:
    """What autogenerate would put in a new migration (nothing, if migrations match)."""

    def compare(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": _defaults_differ}
        )
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


async def test_upgrade_creates_every_table(empty_engine: AsyncEngine) -> None:
    assert await table_names(empty_engine) == set()
    assert await migrate.pending_revisions(empty_engine) == all_revisions()

    await migrate.upgrade(empty_engine)

    assert await table_names(empty_engine) == set(metadata.tables) | {VERSION_TABLE}
    assert await migrate.pending_revisions(empty_engine) == []


async def test_migrated_database_matches_the_schema(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    assert await schema_differences(empty_engine) == []


async def test_upgrade_twice_changes_nothing(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    await migrate.upgrade(empty_engine)
    assert await migrate.pending_revisions(empty_engine) == []
    assert await schema_differences(empty_engine) == []


async def test_downgrade_to_base_and_upgrade_again(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    async with empty_engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO users (id, phone, created_at) "
                "VALUES ('01JAAAAAAAAAAAAAAAAAAAAAAA', '+14155550123', '2026-01-01 00:00:00')"
            )
        )

    await migrate.downgrade(empty_engine, "base")

    assert await table_names(empty_engine) <= {VERSION_TABLE}
    assert await migrate.pending_revisions(empty_engine) == all_revisions()

    await migrate.upgrade(empty_engine)

    assert await migrate.pending_revisions(empty_engine) == []
    assert await schema_differences(empty_engine) == []
    async with empty_engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM users"))).scalar_one() == 0


async def test_every_revision_steps_down_and_up_again(empty_engine: AsyncEngine) -> None:
    """The stairway: each migration's downgrade undoes exactly its upgrade."""
    revisions = all_revisions()
    for index, revision in enumerate(revisions):
        await migrate.upgrade(empty_engine, revision)
        tables = await table_names(empty_engine)
        await migrate.downgrade(empty_engine, revisions[index - 1] if index else "base")
        await migrate.upgrade(empty_engine, revision)
        assert await table_names(empty_engine) == tables, revision
        assert await migrate.pending_revisions(empty_engine) == revisions[index + 1 :]
    assert await schema_differences(empty_engine) == []


def test_cli_migrate_applies_then_reports_nothing_pending(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    args = [
        "migrate",
        "--data-dir",
        str(tmp_path),
        "--database-url",
        f"sqlite+aiosqlite:///{database}",
    ]
    runner = CliRunner()
    revisions = all_revisions()

    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert first.output.strip() == (
        f"applied {len(revisions)} migration(s): {', '.join(revisions)}"
    )
    assert database.exists()

    second = runner.invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert second.output.strip() == "applied 0 migration(s): none pending"
