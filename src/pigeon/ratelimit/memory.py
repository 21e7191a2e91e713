"""Moving-window limits in this process's memory, for one node.

``limits``' own async memory storage starts a pass over every key it holds
after each hit, with a thread hop per key (``asyncio.to_thread`` around a
bisect): each number that asked for a code in the last day is three keys,
so after 1,000 sign-ups each request paid for thousands of thread hops,
most of a code request's server CPU (py-spy, docs/performance.md). Here a
hit touches its own key only, on the event loop, and idle keys are dropped
in one pass at most every ``SWEEP_SECONDS``.

Same semantics as ``limits.aio.strategies.MovingWindowRateLimiter``: a hit
is allowed while its ``cost`` fits beside the hits that fell within the
last ``expiry`` seconds (``amount`` in all), and a refused hit is not
recorded.
"""

from __future__ import annotations

import time
from collections import deque

from limits import RateLimitItem
from limits.util import WindowStats

SWEEP_SECONDS = 60.0  # how often keys without a hit in their window are dropped


class _Window:
    __slots__ = ("expiry", "hits", "used")

    def __init__(self, expiry: float) -> None:
        self.expiry = expiry
        # (time, cost) of the hits in the window, oldest first; one entry per
        # hit, so a lookup of 1,000 numbers is one entry, not 1,000.
        self.hits: deque[tuple[float, int]] = deque()
        self.used = 0  # the costs in ``hits``, summed

    def trim(self, now: float) -> None:
        hits, start = self.hits, now - self.expiry
        while hits and hits[0][0] <= start:
            self.used -= hits.popleft()[1]


class InProcessMovingWindow:
    """The three calls ``LimitsRateLimiter`` makes of a moving-window limiter."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._swept_at = time.time()

    def _window(self, key: str, item: RateLimitItem, now: float) -> _Window:
        """The key's window, trimmed to ``now``; an empty one (not kept) if it has none."""
        window = self._windows.get(key) or _Window(item.get_expiry())
        window.trim(now)
        return window

    async def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        now = time.time()
        if now - self._swept_at > SWEEP_SECONDS:
            self._sweep(now)
        key = item.key_for(*identifiers)
        window = self._window(key, item, now)
        if window.used + cost > item.amount:
            return False
        window.hits.append((now, cost))
        window.used += cost
        self._windows[key] = window
        return True

    async def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        window = self._window(item.key_for(*identifiers), item, time.time())
        return window.used < item.amount

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        now = time.time()
        window = self._window(item.key_for(*identifiers), item, now)
        oldest = window.hits[0][0] if window.hits else now
        return WindowStats(oldest + window.expiry, max(0, item.amount - window.used))

    async def reset(self) -> None:
        self._windows.clear()

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        for key, window in list(self._windows.items()):
            window.trim(now)
            if not window.hits:
                del self._windows[key]
