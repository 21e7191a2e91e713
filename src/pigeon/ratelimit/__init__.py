"""Rate limits on the ``limits`` library: in memory on one node, Redis across nodes."""

from __future__ import annotations

import time
from collections.abc import Mapping

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from pigeon.domain.errors import RateLimited, Unavailable
from pigeon.ratelimit.memory import InProcessMovingWindow


class LimitsRateLimiter:
    """Named rules (``"send_code_per_number"`` -> ``"1/30second;5/hour"``) over one storage.

    When the storage (Redis) is down, limits fail closed: an SMS-sending or
    guessing endpoint must not become unlimited because a cache is away.
    """

    def __init__(self, rules: Mapping[str, str], storage_url: str | None = None) -> None:
        self._rules: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in rules.items()
        }
        # Redis through ``limits``; in memory our own window (``memory.py`` says why).
        self._storage: Storage | None = (
            RedisStorage(_async_redis_url(storage_url), implementation="redispy")
            if storage_url
            else None
        )
        self._limiter: MovingWindowRateLimiter | InProcessMovingWindow = (
            MovingWindowRateLimiter(self._storage) if self._storage else InProcessMovingWindow()
        )

    async def hit(self, rule: str, key: str, cost: int = 1) -> None:
        items = self._rules[rule]
        try:
            # Each hit is atomic in the storage, so concurrent requests cannot
            # slip past a limit; an event refused by a later item still counts
            # against the earlier ones, which errs on the strict side.
            for item in items:
                if not await self._limiter.hit(item, rule, key, cost=cost):
                    raise RateLimited(
                        "rate_limited",
                        "Too many requests; try again later.",
                        retry_after=await self._wait(item, rule, key),
                    )
        except RateLimited:
            raise
        except Exception as exc:
            raise Unavailable("rate_limiter_unavailable", "Please try again shortly.") from exc

    async def retry_after(self, rule: str, key: str) -> int:
        waits = [0]
        for item in self._rules[rule]:
            if not await self._limiter.test(item, rule, key):
                waits.append(await self._wait(item, rule, key))
        return max(waits)

    async def _wait(self, item: RateLimitItem, rule: str, key: str) -> int:
        stats = await self._limiter.get_window_stats(item, rule, key)
        return max(1, int(stats.reset_time - time.time()) + 1)

    async def reset(self) -> None:
        if isinstance(self._limiter, InProcessMovingWindow):
            await self._limiter.reset()
        elif self._storage is not None:
            await self._storage.reset()

    async def close(self) -> None:
        """Close the Redis connections (limits itself offers no way to)."""
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()


def _async_redis_url(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"
