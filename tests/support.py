"""Test doubles and helpers shared by the test suite."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from pigeon.domain.ids import new_id
from pigeon.domain.models import Device, Platform


def make_device(
    user_id: str,
    name: str = "phone",
    at: datetime = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC),
) -> Device:
    """A device row as registration makes one, seen at ``at``, with unique token hashes."""
    token = new_id().lower()
    return Device(
        id=new_id(),
        user_id=user_id,
        name=name,
        platform=Platform.ANDROID,
        created_at=at,
        last_seen_at=at,
        access_token_hash=f"a-{token}",
        access_expires_at=at + timedelta(days=1),
        refresh_token_hash=f"r-{token}",
        refresh_expires_at=at + timedelta(days=90),
    )


class FakeClock:
    """A clock the tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)


class Outbox:
    """Reads what the console SMS provider wrote, as a developer would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def messages(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines()]

    def last_code(self, phone: str) -> str:
        for message in reversed(self.messages()):
            if message["to"] == phone and message["template"] == "verification_code":
                match = re.search(r"\b(\d{6})\b", message["body"])
                assert match, message
                return match.group(1)
        raise AssertionError(f"no code was sent to {phone}")


async def register(
    client: httpx.AsyncClient,
    outbox: Outbox,
    phone: str,
    device: str = "phone",
    platform: str = "android",
    pin: str | None = None,
) -> dict[str, Any]:
    """Request a code, read it from the outbox and verify it: a new device session."""
    response = await client.post("/v1/auth/code", json={"phone": phone})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = {
        "phone": phone,
        "code": outbox.last_code(phone),
        "device": {"name": device, "platform": platform},
    }
    if pin is not None:
        body["pin"] = pin
    response = await client.post("/v1/auth/verify", json=body)
    assert response.status_code == 200, response.text
    return snake_keys(response.json())


def snake_keys(body: dict[str, Any]) -> dict[str, Any]:
    """A session as the tests address it (``session["access_token"]``); the API says
    ``accessToken``. Keeps the many tests that only need a session independent of the
    HTTP API's spelling, which tests/api checks on its own."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value for key, value in body.items()}


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}
