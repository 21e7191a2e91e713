"""The PostgreSQL committer's statements stay key lookups whatever the planner knows.

asyncpg prepares each statement once per connection, and PostgreSQL keeps the
generic plan it makes at the sixth run until the tables are next analysed. On
a fresh database that plan is made on empty, never analysed tables, where a
scan looks cheapest, and it was kept while the tables grew: the acks scanned
the whole inbox at every batch and the send-record lookup filtered a chat's
every record per message (16 ms a batch). These tests make that worst case
(a fresh database, generic plans forced) on the committer's own connections
and read the plans.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from pigeon.storage import migrate
from pigeon.storage.delivery import postgres
from pigeon.storage.engine import create_committer_engine, create_engine
from tests.conftest import POSTGRES_URL

# What the committer runs on PostgreSQL (the queue reads and purges run elsewhere).
COMMITTER_STATEMENTS = {
    "batch_facts": postgres.BATCH_FACTS,
    "find_sent": postgres.FIND_SENT,
    "member_devices": postgres.MEMBER_DEVICES,
    "disappearing": postgres.DISAPPEARING,
    "direct_blocks": postgres.DIRECT_BLOCKS,
    "devices_of": postgres.DEVICES_OF,
    "allocate_chat_seqs": postgres.ALLOCATE_CHAT_SEQS,
    "allocate_inbox_seqs": postgres.ALLOCATE_INBOX_SEQS,
    "allocate_seqs": postgres.ALLOCATE_SEQS,
    "remove_acked": postgres.REMOVE_ACKED,
    "senders_between": postgres.SENDERS_BETWEEN,
    "insert_batch": postgres.insert_statement(("messages", "sent_messages", "inbox")),
}


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """A migrated database nobody has written to or analysed yet."""
    base = make_url(POSTGRES_URL)
    name = f"pigeon_plans_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        await engine.dispose()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def generic_plans(url: str) -> dict[str, str]:
    """Each committer statement's generic plan, on a connection of the committer's engine."""
    engine = create_committer_engine(url, pool_size=1)
    plans = {}
    try:
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            await raw.execute("SET plan_cache_mode = force_generic_plan")
            for name, sql in COMMITTER_STATEMENTS.items():
                await raw.execute(f"PREPARE {name} AS {sql}")
                types = await raw.fetchval(
                    "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1",
                    name,
                )
                args = ", ".join(f"NULL::{t}" for t in types)
                rows = await raw.fetch(f"EXPLAIN EXECUTE {name}({args})")
                plans[name] = "\n".join(row[0] for row in rows)
    finally:
        await engine.dispose()
    return plans


async def test_no_committer_statement_scans_a_table_on_a_fresh_database(
    fresh_database: str,
) -> None:
    plans = await generic_plans(fresh_database)
    scanning = {
        name: re.findall(r"Seq Scan on \w+", plan)
        for name, plan in plans.items()
        if "Seq Scan" in plan or "Bitmap Heap Scan" in plan
    }
    assert scanning == {}


async def test_a_send_record_is_found_through_its_own_key_on_a_fresh_database(
    fresh_database: str,
) -> None:
    plan = (await generic_plans(fresh_database))["find_sent"]
    assert "Index Scan using pk_sent_messages" in plan
    assert "ix_sent_messages_chat_id_seq" not in plan
