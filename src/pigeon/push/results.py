"""What a push service's HTTP answer means for the push: sent, retry, gone or dropped."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Container

import httpx

from pigeon.services.ports import PushOutcome, PushResult


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), if the service sent one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(
    response: httpx.Response, gone: Container[int] = (404, 410), detail: str = ""
) -> PushResult:
    status = response.status_code
    if 200 <= status < 300:
        return PushResult(PushOutcome.SENT)
    if status in gone:
        return PushResult(PushOutcome.GONE, detail=detail or str(status))
    if status == 429 or status >= 500:
        return PushResult(PushOutcome.RETRY, retry_after(response), detail or str(status))
    return PushResult(PushOutcome.DROPPED, detail=detail or f"{status} {response.text[:200]}")


def unreachable(exc: Exception) -> PushResult:
    """No answer at all (refused, reset, timed out): the service may be back soon."""
    return PushResult(PushOutcome.RETRY, detail=f"{type(exc).__name__}: {exc}"[:200])
