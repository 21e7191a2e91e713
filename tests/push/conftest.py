"""Push tests: a live server on real time (coalescing and retries are timed), a Web Push fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from pigeon.config import Settings
from tests.fakes.webpush import FakeWebPush
from tests.gateway.conftest import connect, server, user  # noqa: F401 - the gateway's fixtures

COALESCE_SECONDS = 1.0


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
def clock() -> RealClock:  # type: ignore[override]
    return RealClock()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "push_allow_private_endpoints": True,  # the fakes listen on 127.0.0.1
            "push_coalesce_seconds": COALESCE_SECONDS,
            "push_retry_base_seconds": 0.05,
        }
    )


@pytest.fixture
async def webpush() -> AsyncIterator[FakeWebPush]:
    fake = FakeWebPush()
    await fake.start()
    yield fake
    await fake.stop()
