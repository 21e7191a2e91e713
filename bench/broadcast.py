"""What a broadcast to a full list costs: ``python -m bench.broadcast``.

One sender and a list of 256 recipients (PIGEON_BROADCAST_MAX_RECIPIENTS),
each with the sender among their contacts, on SQLite and PostgreSQL, in this
process (no sockets: the cost measured is the database's). Printed per
broadcast: the transactions committed (every commit on every engine, the
group committer's included), the 1:1 messages it became, and the time until
the answer. The first broadcast also makes the 256 1:1 chats; the second
finds them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench.common import Workspace, seed
from pigeon.bootstrap import build
from pigeon.config import Settings
from pigeon.domain.ids import new_id
from pigeon.services.accounts import Principal
from pigeon.storage.schema import contacts

RECIPIENTS = 256


class CommitCounter:
    """Counts COMMITs on every SQLAlchemy engine of the process (sync and async alike)."""

    def __init__(self) -> None:
        self.count = 0
        sa.event.listen(Engine, "commit", self._commit)

    def _commit(self, conn: Any) -> None:
        self.count += 1

    def close(self) -> None:
        sa.event.remove(Engine, "commit", self._commit)


def _batches(container: Any) -> int:
    """Group commits so far (PostgreSQL's committer talks asyncpg, past SQLAlchemy's events)."""
    metric = container.metrics.registry.get_sample_value("pigeon_commit_batch_operations_count")
    return int(metric or 0)


async def run(kind: str, recipients: int) -> list[dict[str, Any]]:
    rows = []
    async with Workspace(kind) as space:
        [sender, *others] = await seed(space.database.url, recipients + 1)
        settings = Settings(
            data_dir=space.data_dir,
            database_url=space.database.url,
            secret_key="bench",  # noqa: S106 (a throwaway server)
            auto_migrate=False,
            broadcast_max_recipients=recipients,
        )
        container = build(settings)
        await container.start()
        try:
            async with container.engine.begin() as conn:
                await conn.execute(
                    contacts.insert(),
                    [
                        {
                            "owner_id": o.user_id,
                            "contact_id": sender.user_id,
                            "added_at": datetime.now(UTC),
                        }
                        for o in others
                    ],
                )
            principal = Principal(sender.user_id, sender.devices[0][0])
            broadcast = await container.broadcasts.create(
                principal, "bench", [o.user_id for o in others]
            )
            for label in ("first (makes the 1:1 chats)", "second (chats exist)"):
                counter = CommitCounter()
                batches = _batches(container)
                started = time.perf_counter()
                result = await container.broadcasts.send(
                    principal, broadcast.id, new_id(), "hello everyone", []
                )
                elapsed = time.perf_counter() - started
                counter.close()
                rows.append(
                    {
                        "database": kind,
                        "broadcast": label,
                        "recipients": recipients,
                        "delivered": len(result.delivered),
                        "skipped": result.skipped,
                        "transactions": counter.count,
                        "committer_batches": _batches(container) - batches,
                        "ms": round(1e3 * elapsed, 1),
                    }
                )
        finally:
            await container.close()
    return rows


async def main(recipients: int) -> list[dict[str, Any]]:
    return [row for kind in ("sqlite", "postgresql") for row in await run(kind, recipients)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=RECIPIENTS)
    for row in asyncio.run(main(parser.parse_args().recipients)):
        print(json.dumps(row))
