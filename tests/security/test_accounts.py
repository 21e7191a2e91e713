"""Attack suite: accounts, codes and tokens.

Mass assignment on the profile, brute force on a verification code, every kind
of bad token on HTTP and on the WebSocket, and what a stolen database dump
would reveal (only hashes).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pigeon.bootstrap import Container
from pigeon.config import Settings
from pigeon.domain.ids import new_id
from pigeon.storage.schema import devices, users
from tests.gateway.conftest import Register
from tests.live import LiveServer
from tests.support import FakeClock, Outbox, bearer, register


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The per-code limit must be what stops a guesser, not the per-address one.
    return Settings(**(settings.model_dump() | {"verify_limit_per_ip": "100000/hour"}))


async def rows(engine: AsyncEngine, table: sa.Table) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return sorted((tuple(r) for r in await conn.execute(sa.select(table))), key=repr)


# -- mass assignment -----------------------------------------------------------------

PROTECTED: dict[str, Any] = {
    "id": new_id(),
    "phone": "+14155559999",
    "has_pin": True,
    "created_at": "2000-01-01T00:00:00Z",
    "pin_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
    "role": "admin",
    "verified": True,
    "device_id": new_id(),
}


@pytest.mark.parametrize("field", list(PROTECTED))
async def test_protected_profile_fields_cannot_be_assigned(
    field: str, client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    session = await register(client, outbox, "+14155550111")
    await client.patch("/v1/me", json={"name": "Mallory"}, headers=bearer(session))
    me = (await client.get("/v1/me", headers=bearer(session))).json()
    stored = await rows(container.engine, users), await rows(container.engine, devices)

    value = PROTECTED[field]
    for body in ({field: value}, {"name": "Eve", field: value}, {field: value, "about": "x"}):
        response = await client.patch("/v1/me", json=body, headers=bearer(session))
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "unknown_field"
        assert ["body", field] in [f["location"] for f in error["fields"]]

    assert (await client.get("/v1/me", headers=bearer(session))).json() == me
    assert (await rows(container.engine, users), await rows(container.engine, devices)) == stored


# -- verification codes ------------------------------------------------------------------


async def test_a_thousand_guesses_at_one_code_evaluate_at_most_five(
    app: FastAPI, client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    phone = "+14155550122"
    assert (await client.post("/v1/auth/code", json={"phone": phone})).status_code == 202
    code = outbox.last_code(phone)
    guesses = [f"{n:06d}" for n in random.sample(range(10**6), 1_001)]
    guesses = [g for g in guesses if g != code][:1_000]

    answers: Counter[tuple[int, str]] = Counter()
    for batch in range(0, len(guesses), 50):
        # Each batch from another address: spreading out does not help either.
        transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{batch // 50 + 1}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://pigeon.test") as c:
            responses = await asyncio.gather(
                *(
                    c.post(
                        "/v1/auth/verify",
                        json={"phone": phone, "code": guess, "device": {"name": "brute"}},
                    )
                    for guess in guesses[batch : batch + 50]
                )
            )
        for response in responses:
            answers[response.status_code, response.json()["error"]["code"]] += 1
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1

    assert set(answers) <= {(403, "invalid_code"), (429, "too_many_attempts")}, answers
    assert answers[403, "invalid_code"] <= 5, answers
    assert sum(answers.values()) == 1_000

    right = await client.post(
        "/v1/auth/verify", json={"phone": phone, "code": code, "device": {"name": "brute"}}
    )
    assert right.status_code == 429, right.text
    assert right.json()["error"]["code"] == "too_many_attempts"
    assert await rows(container.engine, users) == []
    assert await rows(container.engine, devices) == []


# -- tokens -----------------------------------------------------------------------------


@dataclass
class BadCredential:
    header: str | None = None  # the Authorization header
    query: str | None = None  # a token in the URL
    frame_token: str | None = None  # a token in a first "auth" frame


Make = Callable[[httpx.AsyncClient, Register, FakeClock, Settings], Awaitable[BadCredential]]


def _bearer_and_frame(token: str) -> BadCredential:
    return BadCredential(header=f"Bearer {token}", frame_token=token)


async def _revoked(
    client: httpx.AsyncClient, user: Register, clock: FakeClock, settings: Settings
) -> BadCredential:
    session = await user()
    assert (await client.post("/v1/auth/logout", headers=bearer(session))).status_code == 204
    return _bearer_and_frame(session["access_token"])


async def _removed_device(
    client: httpx.AsyncClient, user: Register, clock: FakeClock, settings: Settings
) -> BadCredential:
    phone = "+14155550133"
    first, second = await user(phone, "laptop"), await user(phone, "stolen phone")
    removed = await client.delete(f"/v1/devices/{second['device_id']}", headers=bearer(first))
    assert removed.status_code == 204
    return _bearer_and_frame(second["access_token"])


def _one_char_changed(token: str) -> str:
    index = len(token) - 5
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


async def _tampered(
    client: httpx.AsyncClient, user: Register, clock: FakeClock, settings: Settings
) -> BadCredential:
    return _bearer_and_frame(_one_char_changed((await user())["access_token"]))


async def _truncated(
    client: httpx.AsyncClient, user: Register, clock: FakeClock, settings: Settings
) -> BadCredential:
    return _bearer_and_frame((await user())["access_token"][:-1])


async def _in_the_query(
    client: httpx.AsyncClient, user: Register, clock: FakeClock, settings: Settings
) -> BadCredential:
    return BadCredential(query=(await user())["access_token"])


async def _basic_scheme(
    client: httpx.AsyncClient, user: Register, clock: FakeClock, settings: Settings
) -> BadCredential:
    return BadCredential(header=f"Basic {(await user())['access_token']}")


async def _expired(
    client: httpx.AsyncClient, user: Register, clock: FakeClock, settings: Settings
) -> BadCredential:
    session = await user()
    clock.advance(seconds=settings.access_token_ttl_seconds)
    return _bearer_and_frame(session["access_token"])


async def _refresh_token(
    client: httpx.AsyncClient, user: Register, clock: FakeClock, settings: Settings
) -> BadCredential:
    return _bearer_and_frame((await user())["refresh_token"])


BAD_CREDENTIALS: dict[str, Make] = {
    "revoked": _revoked,
    "removed-device": _removed_device,
    "tampered": _tampered,
    "truncated": _truncated,
    "query-string": _in_the_query,
    "basic-scheme": _basic_scheme,
    "expired": _expired,
    "refresh-as-access": _refresh_token,
}


async def ws_outcome(url: str, headers: dict[str, str] | None, frame: Any = None) -> Any:
    """How the server ended the connection: (close code, reason) or the HTTP status."""
    try:
        async with ws_connect(url, additional_headers=headers, open_timeout=10) as socket:
            if frame is not None:
                await socket.send(json.dumps(frame))
            received = []
            try:
                async with asyncio.timeout(10):
                    async for raw in socket:
                        received.append(raw)
            except ConnectionClosed:
                pass
            assert received == [], received  # not even "ready"
            return socket.close_code, socket.close_reason
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.parametrize("kind", list(BAD_CREDENTIALS))
async def test_bad_tokens_are_refused_on_http_and_websocket(
    kind: str,
    client: httpx.AsyncClient,
    user: Register,
    server: LiveServer,
    clock: FakeClock,
    settings: Settings,
) -> None:
    bad = await BAD_CREDENTIALS[kind](client, user, clock, settings)

    headers = {"Authorization": bad.header} if bad.header else {}
    params = {"access_token": bad.query} if bad.query else {}
    # A bearer token is invalid_token; another scheme or a token in the URL is no token.
    bearer_token = bad.header is not None and bad.header.startswith("Bearer ")
    code = "invalid_token" if bearer_token else "missing_token"
    for method, path in (("GET", "/v1/me"), ("GET", "/v1/devices"), ("POST", "/v1/auth/logout")):
        response = await client.request(method, path, headers=headers, params=params)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == code, (path, response.text)

    if bad.header is not None:
        outcome = await ws_outcome(server.ws_url, {"Authorization": bad.header})
        assert outcome == (1008, "invalid_token")
    if bad.frame_token is not None:
        frame = {"id": 1, "type": "auth", "data": {"token": bad.frame_token}}
        assert await ws_outcome(server.ws_url, None, frame) == (1008, "invalid_token")
    if bad.query is not None:
        # Refused before the upgrade, even with nothing else wrong.
        assert await ws_outcome(f"{server.ws_url}?access_token={bad.query}", None) == 403

    # A good token still works on both, so the refusals above were about the token.
    good = await user()
    assert (await client.get("/v1/me", headers=bearer(good))).status_code == 200
    async with ws_connect(server.ws_url, additional_headers=bearer(good)) as socket:
        ready = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert ready == {
            "event": "ready",
            "data": {"userId": good["user_id"], "deviceId": good["device_id"]},
        }


# -- what a database dump reveals ------------------------------------------------------


async def database_cells(engine: AsyncEngine) -> list[str]:
    """Every value in every table of the database, as text."""
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        assert "users" in names
        assert "devices" in names
        cells: list[str] = []
        for name in names:
            for row in await conn.execute(sa.text(f'SELECT * FROM "{name}"')):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        cells.append(bytes(value).decode("latin-1"))
                    elif value is not None:
                        cells.append(str(value))
        return cells


def sqlite_files(settings: Settings) -> list[Path]:
    url = settings.effective_database_url
    if not url.startswith("sqlite"):
        return []
    path = Path(url.split("///", 1)[1])
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists()]


@pytest.fixture
async def pinned_user(client: httpx.AsyncClient, outbox: Outbox) -> dict[str, Any]:
    phone, pin = "+14155550144", "583920"
    first = await register(client, outbox, phone)
    response = await client.put("/v1/me/pin", json={"pin": pin}, headers=bearer(first))
    assert response.status_code == 204
    # A second device gives the PIN; the first refreshes its tokens.
    second = await register(client, outbox, phone, "tablet", pin=pin)
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert refreshed.status_code == 200
    # And a code is waiting, unused.
    assert (await client.post("/v1/auth/code", json={"phone": phone})).status_code == 202
    return {
        "pin": pin,
        "code": outbox.last_code(phone),
        "tokens": [
            first["access_token"],
            first["refresh_token"],
            second["access_token"],
            second["refresh_token"],
            refreshed.json()["accessToken"],
            refreshed.json()["refreshToken"],
        ],
    }


async def test_tokens_codes_and_pins_are_stored_only_as_hashes(
    pinned_user: dict[str, Any], container: Container, settings: Settings
) -> None:
    cells = await database_cells(container.engine)
    raw_files = [path.read_bytes().decode("latin-1") for path in sqlite_files(settings)]
    assert any(len(cell) == 64 for cell in cells)  # the hashes are there

    for token in pinned_user["tokens"]:
        assert not [cell for cell in cells if token in cell]
        assert not [path for path in raw_files if token in path]
    # Six digits stand alone when stored as such (not inside a hash or an id).
    for digits in (pinned_user["code"], pinned_user["pin"]):
        alone = re.compile(rf"(?<![0-9A-Za-z]){digits}(?![0-9A-Za-z])")
        assert not [cell for cell in cells if alone.search(cell)], digits
        assert not [path for path in raw_files if alone.search(path)], digits
