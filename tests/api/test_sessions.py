"""Device sessions: token refresh and expiry, logout, the device list and its limit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.config import Settings
from tests.support import FakeClock, Outbox, bearer, register, snake_keys

PHONE = "+14155550123"
OTHER_PHONE = "+14155550199"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The device-limit test registers six devices of one number within a minute.
    return settings.model_copy(update={"send_code_limit_per_number": "10/minute;20/day"})


async def me_status(client: httpx.AsyncClient, access_token: str) -> int:
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {access_token}"})
    return response.status_code


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refreshToken": refresh_token})


async def device_ids(client: httpx.AsyncClient, session: dict[str, Any]) -> set[str]:
    response = await client.get("/v1/devices", headers=bearer(session))
    assert response.status_code == 200, response.text
    return {d["id"] for d in response.json()["devices"]}


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_refresh_rotates_both_tokens(client: httpx.AsyncClient, outbox: Outbox) -> None:
    old = await register(client, outbox, PHONE)

    response = await refresh(client, old["refresh_token"])
    assert response.status_code == 200, response.text
    new = response.json()
    assert new["userId"] == old["user_id"]
    assert new["deviceId"] == old["device_id"]
    assert new["accessToken"] != old["access_token"]
    assert new["refreshToken"] != old["refresh_token"]
    assert new["newUser"] is False

    assert await me_status(client, new["accessToken"]) == 200
    assert_invalid_token(await client.get("/v1/me", headers=bearer(old)))
    assert_invalid_token(await refresh(client, old["refresh_token"]))
    # Replaying the old refresh token did not spoil the new one.
    again = await refresh(client, new["refreshToken"])
    assert again.status_code == 200
    assert await me_status(client, again.json()["accessToken"]) == 200


async def test_access_token_expires_but_refresh_still_works(
    client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock, settings: Settings
) -> None:
    session = await register(client, outbox, PHONE)
    assert session["expires_in"] == settings.access_token_ttl_seconds == 24 * 3600

    clock.advance(seconds=settings.access_token_ttl_seconds - 1)
    assert await me_status(client, session["access_token"]) == 200
    clock.advance(seconds=1)
    assert_invalid_token(await client.get("/v1/me", headers=bearer(session)))

    response = await refresh(client, session["refresh_token"])
    assert response.status_code == 200, response.text
    assert await me_status(client, response.json()["accessToken"]) == 200


async def test_refresh_token_expires(
    client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock, settings: Settings
) -> None:
    session = await register(client, outbox, PHONE)
    clock.advance(seconds=settings.refresh_token_ttl_seconds)
    assert_invalid_token(await refresh(client, session["refresh_token"]))


async def test_logout_revokes_only_the_calling_device(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    phone = await register(client, outbox, PHONE, device="phone")
    laptop = await register(client, outbox, PHONE, device="laptop", platform="desktop")

    response = await client.post("/v1/auth/logout", headers=bearer(phone))
    assert response.status_code == 204

    assert_invalid_token(await client.get("/v1/me", headers=bearer(phone)))
    assert_invalid_token(await refresh(client, phone["refresh_token"]))
    assert await me_status(client, laptop["access_token"]) == 200
    assert await device_ids(client, laptop) == {laptop["device_id"]}


async def test_logout_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/logout")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


async def test_device_list_marks_the_current_device(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    pixel = await register(client, outbox, PHONE, device="Pixel", platform="android")
    mac = await register(client, outbox, PHONE, device="MacBook", platform="desktop")

    for me, other in [(pixel, mac), (mac, pixel)]:
        response = await client.get("/v1/devices", headers=bearer(me))
        assert response.status_code == 200
        by_id = {d["id"]: d for d in response.json()["devices"]}
        assert set(by_id) == {pixel["device_id"], mac["device_id"]}
        assert by_id[me["device_id"]]["current"] is True
        assert by_id[other["device_id"]]["current"] is False
    response = await client.get("/v1/devices", headers=bearer(pixel))
    by_id = {d["id"]: d for d in response.json()["devices"]}
    assert (by_id[pixel["device_id"]]["name"], by_id[pixel["device_id"]]["platform"]) == (
        "Pixel",
        "android",
    )
    assert (by_id[mac["device_id"]]["name"], by_id[mac["device_id"]]["platform"]) == (
        "MacBook",
        "desktop",
    )


async def test_removing_another_of_my_devices_revokes_it_at_once(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    phone = await register(client, outbox, PHONE, device="phone")
    stolen = await register(client, outbox, PHONE, device="stolen laptop")
    assert await me_status(client, stolen["access_token"]) == 200

    response = await client.delete(f"/v1/devices/{stolen['device_id']}", headers=bearer(phone))
    assert response.status_code == 204

    assert_invalid_token(await client.get("/v1/me", headers=bearer(stolen)))
    assert_invalid_token(await refresh(client, stolen["refresh_token"]))
    assert await device_ids(client, phone) == {phone["device_id"]}
    assert await me_status(client, phone["access_token"]) == 200


async def test_someone_elses_device_looks_like_an_unknown_one(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    mine = await register(client, outbox, PHONE)
    theirs = await register(client, outbox, OTHER_PHONE)

    foreign = await client.delete(f"/v1/devices/{theirs['device_id']}", headers=bearer(mine))
    unknown = await client.delete("/v1/devices/01JZZZZZZZZZZZZZZZZZZZZZZZ", headers=bearer(mine))
    for response in (foreign, unknown):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "device_not_found"
    assert foreign.json() == unknown.json()

    assert await me_status(client, theirs["access_token"]) == 200
    assert await device_ids(client, theirs) == {theirs["device_id"]}
    assert await device_ids(client, mine) == {mine["device_id"]}


async def test_device_limit(client: httpx.AsyncClient, outbox: Outbox, settings: Settings) -> None:
    assert settings.max_devices_per_user == 5
    sessions = [await register(client, outbox, PHONE, device=f"device {n}") for n in range(5)]

    await client.post("/v1/auth/code", json={"phone": PHONE})
    body = {"phone": PHONE, "code": outbox.last_code(PHONE), "device": {"name": "sixth"}}
    response = await client.post("/v1/auth/verify", json=body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "too_many_devices"
    assert await device_ids(client, sessions[0]) == {s["device_id"] for s in sessions}

    # Removing one makes room, and the code was not used up by the refusal.
    gone = sessions.pop()
    response = await client.delete(f"/v1/devices/{gone['device_id']}", headers=bearer(sessions[0]))
    assert response.status_code == 204
    response = await client.post("/v1/auth/verify", json=body)
    assert response.status_code == 200, response.text
    assert len(await device_ids(client, sessions[0])) == 5


async def test_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    first = await register(client, outbox, PHONE)
    response = await refresh(client, first["refresh_token"])
    second = snake_keys(response.json())
    secrets = [s[t] for s in (first, second) for t in ("access_token", "refresh_token")]
    # Also the random part alone, in case a prefix were stripped before storing.
    secrets += [token.split("_", 1)[1] for token in secrets]

    async with container.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT * FROM devices"))).all()
    assert len(rows) == 1
    values = [str(value) for value in rows[0]]
    assert first["device_id"] in values  # the right row
    for secret in secrets:
        assert not any(secret in value for value in values)


def _tamper(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


async def test_a_token_with_one_character_changed_is_refused(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    session = await register(client, outbox, PHONE)
    access, refresh_token = session["access_token"], session["refresh_token"]
    for index in (len("pga_"), len(access) // 2, len(access) - 1):
        tampered = _tamper(access, index)
        assert_invalid_token(
            await client.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"})
        )
    assert_invalid_token(await refresh(client, _tamper(refresh_token, len(refresh_token) - 1)))
    # The untouched tokens still work: the refusals were about the change.
    assert await me_status(client, access) == 200
    assert (await refresh(client, refresh_token)).status_code == 200
