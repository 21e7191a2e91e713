"""Rate limits in memory (one node) and in a real Redis (shared by every node)."""

from __future__ import annotations

import os
import uuid

import pytest

from pigeon import ratelimit
from pigeon.domain.errors import RateLimited, Unavailable
from pigeon.ratelimit import LimitsRateLimiter, memory

REDIS_URL = os.environ.get("PIGEON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RULES = {"send_code": "3/minute;5/hour"}


async def hit_until_refused(limiter: LimitsRateLimiter, key: str, attempts: int) -> int:
    allowed = 0
    for _ in range(attempts):
        try:
            await limiter.hit("send_code", key)
        except RateLimited as refused:
            retry_after = refused.retry_after
            break
        allowed += 1
    else:
        return allowed
    assert 1 <= retry_after <= 61
    return allowed


async def test_in_memory_limit_allows_the_burst_then_refuses() -> None:
    limiter = LimitsRateLimiter(RULES)
    assert await hit_until_refused(limiter, "+14155550100", 10) == 3
    assert await hit_until_refused(limiter, "+14155550101", 10) == 3  # per key
    assert await limiter.retry_after("send_code", "+14155550100") >= 1
    assert await limiter.retry_after("send_code", "+14155550102") == 0


async def test_redis_limit_is_shared_by_every_node() -> None:
    key = f"+1415{uuid.uuid4().int % 10**7:07d}"
    node_a = LimitsRateLimiter(RULES, storage_url=REDIS_URL)
    node_b = LimitsRateLimiter(RULES, storage_url=REDIS_URL)
    try:
        await node_a.hit("send_code", key)
        await node_b.hit("send_code", key)
        await node_a.hit("send_code", key)
        with pytest.raises(RateLimited):
            await node_b.hit("send_code", key)
        assert await node_a.retry_after("send_code", key) >= 1
    finally:
        await node_a.close()
        await node_b.close()


async def test_an_unreachable_redis_fails_closed() -> None:
    # Sending codes must not become unlimited because the limiter's store is away.
    limiter = LimitsRateLimiter(RULES, storage_url="redis://127.0.0.1:1/0")
    try:
        with pytest.raises(Unavailable) as refused:
            await limiter.hit("send_code", "+14155550100")
        assert refused.value.code == "rate_limiter_unavailable"
    finally:
        await limiter.close()


class MovedClock:
    """``time.time`` for the in-memory limiter, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> MovedClock:
    moved = MovedClock()
    monkeypatch.setattr(memory, "time", moved)
    monkeypatch.setattr(ratelimit, "time", moved)
    return moved


async def test_in_memory_window_moves_and_refused_hits_do_not_count(clock: MovedClock) -> None:
    limiter = LimitsRateLimiter({"send_code": "2/second"})
    assert await hit_until_refused(limiter, "+14155550100", 5) == 2
    assert await limiter.retry_after("send_code", "+14155550100") > 0
    # Three refused hits above did not extend the window: a second after the
    # first two, the key is allowed two more.
    clock.now += 1.05
    assert await limiter.retry_after("send_code", "+14155550100") == 0
    assert await hit_until_refused(limiter, "+14155550100", 5) == 2


async def test_in_memory_limits_forget_idle_keys(
    monkeypatch: pytest.MonkeyPatch, clock: MovedClock
) -> None:
    """Thousands of numbers that asked once do not stay in memory (nor slow each hit)."""
    monkeypatch.setattr(memory, "SWEEP_SECONDS", 0.0)
    limiter = LimitsRateLimiter({"send_code": "1/second"})
    for n in range(1000):
        await limiter.hit("send_code", f"+1415555{n:04d}")
    clock.now += 1.05
    await limiter.hit("send_code", "+14155550000")  # sweeps: only this key is left
    assert await hit_until_refused(limiter, "+14155550000", 2) == 0
    assert await limiter.retry_after("send_code", "+14155550001") == 0
    assert len(limiter._limiter._windows) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("storage", [None, REDIS_URL])
async def test_a_costly_hit_counts_its_cost_on_both_storages(storage: str | None) -> None:
    """A lookup of 8 numbers spends 8 of a 10-number quota, on one node or on Redis."""
    limiter = LimitsRateLimiter({"numbers": "10/day"}, storage_url=storage)
    key = uuid.uuid4().hex
    try:
        await limiter.hit("numbers", key, cost=8)
        with pytest.raises(RateLimited):
            await limiter.hit("numbers", key, cost=3)  # 11 > 10: refused, not recorded
        await limiter.hit("numbers", key, cost=2)
        with pytest.raises(RateLimited):
            await limiter.hit("numbers", key)
    finally:
        await limiter.close()
