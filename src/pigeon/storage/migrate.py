"""Running Alembic migrations from code (``pigeon migrate`` and server start-up)."""

from __future__ import annotations

from importlib.resources import files

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("pigeon.storage") / "migrations"))
    return config


# Held (PostgreSQL) while migrations run: nodes started at once migrate one
# after the other, and the later ones find nothing left to do.
MIGRATION_LOCK = 0x70696765  # "pige"


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Released with the transaction, whichever way it ends.
            await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        await conn.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the database back to ``revision`` (``"base"`` removes every table)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def pending_revisions(engine: AsyncEngine) -> list[str]:
    """Revisions the database has not applied yet, oldest first."""

    def read(connection: Connection) -> list[str]:
        current = set(MigrationContext.configure(connection).get_current_heads())
        script = ScriptDirectory.from_config(alembic_config())
        pending = []
        for rev in script.walk_revisions():
            if rev.revision in current:
                break
            pending.append(rev.revision)
        return list(reversed(pending))

    async with engine.connect() as conn:
        return await conn.run_sync(read)
