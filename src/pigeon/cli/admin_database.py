"""The database ``pigeon admin`` works on must already be a Pigeon database.

A typo in ``--data-dir`` used to create an empty data directory, an empty
SQLite file in it, and then print hundreds of lines of traceback about a
missing table. The operator needs one line: no Pigeon database there.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from pigeon.config import Settings

# The first table the first migration makes; every Pigeon database has it.
PIGEON_TABLE = "users"


class NoPigeonDatabase(Exception):
    """What to tell the operator, in one line."""


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database (or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def where(settings: Settings) -> str:
    """How to point at the right database, for the message."""
    if settings.database_url:
        return "Check --database-url (or PIGEON_DATABASE_URL): it should be the server's database."
    return (
        "Point --data-dir (or PIGEON_DATA_DIR) at the server's data directory, "
        "or --database-url at its database."
    )


def refuse_missing_file(settings: Settings) -> None:
    """Before anything connects: SQLite would create a missing file."""
    file = sqlite_file(settings.effective_database_url)
    if file is not None and not file.is_file():
        raise NoPigeonDatabase(f"No Pigeon database at {file}. {where(settings)}")


async def require_pigeon_tables(engine: AsyncEngine, settings: Settings) -> None:
    """The database answers and holds Pigeon's tables (a migrated database)."""
    shown = engine.url.render_as_string(hide_password=True)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda sync: sa.inspect(sync).has_table(PIGEON_TABLE))
    except (OSError, sa.exc.SQLAlchemyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NoPigeonDatabase(f"Cannot open the database at {shown}: {reason}") from exc
    if not found:
        raise NoPigeonDatabase(
            f"No Pigeon database at {shown}: it has no Pigeon tables. {where(settings)} "
            "(A new database gets them from `pigeon migrate` or `pigeon serve`.)"
        )
