"""The periodic purge removes abandoned devices (and their queues) and stale staging files."""

from __future__ import annotations

import os
import time

import httpx
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.storage.schema import devices
from tests.support import FakeClock, Outbox, bearer, register


async def test_a_device_unrefreshed_past_its_refresh_ttl_is_purged(
    client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock, container: Container
) -> None:
    old = await register(client, outbox, "+14155550100", device="old phone")
    clock.advance(days=60)
    new = await register(client, outbox, "+14155550100", device="new phone")
    clock.advance(days=31)  # the old phone's 90 days are up, the new one's are not
    assert await container.accounts.purge_expired() == {"codes": 0, "devices": 1}
    async with container.engine.connect() as conn:
        left = set((await conn.execute(sa.select(devices.c.id))).scalars())
    assert left == {new["device_id"]}
    assert (await client.get("/v1/me", headers=bearer(old))).status_code == 401


async def test_staging_files_left_by_a_crash_are_swept(container: Container) -> None:
    staging = container.settings.data_dir / "uploads"
    stale, fresh = staging / "01STALE.part", staging / "01FRESH.part"
    stale.write_bytes(b"half an upload")
    fresh.write_bytes(b"an upload in progress")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    counts = await container.media.purge()
    assert counts["staging_files"] == 1
    assert not stale.exists()
    assert fresh.exists()
