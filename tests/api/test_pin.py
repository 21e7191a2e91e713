"""The two-step PIN: setting it, registering with it, its attempt limit and its reset."""

from __future__ import annotations

from typing import Any

import argon2
import httpx
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.config import Settings
from tests.support import FakeClock, Outbox, bearer, register, snake_keys

PHONE = "+14155550123"
PIN = "480213"
WRONG_PIN = "480214"


async def set_pin(client: httpx.AsyncClient, session: dict[str, Any], pin: str = PIN) -> None:
    response = await client.put("/v1/me/pin", json={"pin": pin}, headers=bearer(session))
    assert response.status_code == 204, response.text


async def new_code(client: httpx.AsyncClient, outbox: Outbox, phone: str = PHONE) -> str:
    response = await client.post("/v1/auth/code", json={"phone": phone})
    assert response.status_code == 202, response.text
    return outbox.last_code(phone)


async def verify(
    client: httpx.AsyncClient, code: str, pin: str | None = None, device: str = "new phone"
) -> httpx.Response:
    body: dict[str, Any] = {"phone": PHONE, "code": code, "device": {"name": device}}
    if pin is not None:
        body["pin"] = pin
    return await client.post("/v1/auth/verify", json=body)


async def has_pin(client: httpx.AsyncClient, session: dict[str, Any]) -> bool:
    response = await client.get("/v1/me", headers=bearer(session))
    assert response.status_code == 200, response.text
    value = response.json()["hasPin"]
    assert isinstance(value, bool)
    return value


async def stored_pin_hash(container: Container, user_id: str) -> str | None:
    async with container.engine.connect() as conn:
        query = sa.text("SELECT pin_hash FROM users WHERE id = :id")
        value: str | None = (await conn.execute(query, {"id": user_id})).scalar_one()
    return value


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_set_pin_shows_in_me(client: httpx.AsyncClient, outbox: Outbox) -> None:
    session = await register(client, outbox, PHONE)
    assert await has_pin(client, session) is False
    await set_pin(client, session)
    assert await has_pin(client, session) is True


async def test_pin_must_be_six_ascii_digits(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    session = await register(client, outbox, PHONE)
    await set_pin(client, session)
    before = await stored_pin_hash(container, session["user_id"])
    for bad in ["12345", "1234567", "12a456", "", " 12345", "١٢٣٤٥٦", 123456, None]:
        response = await client.put("/v1/me/pin", json={"pin": bad}, headers=bearer(session))
        assert_error(response, 422, "invalid_request")
    assert await stored_pin_hash(container, session["user_id"]) == before


async def test_pin_is_stored_as_an_argon2id_hash(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    session = await register(client, outbox, PHONE)
    await set_pin(client, session)
    async with container.engine.connect() as conn:
        query = sa.text("SELECT * FROM users WHERE id = :id")
        row = (await conn.execute(query, {"id": session["user_id"]})).one()
    pin_hash = row._mapping["pin_hash"]
    assert pin_hash.startswith("$argon2id$")
    assert argon2.PasswordHasher().verify(pin_hash, PIN)
    assert not any(PIN in str(value) for value in row)


async def test_new_device_needs_the_pin(client: httpx.AsyncClient, outbox: Outbox) -> None:
    owner = await register(client, outbox, PHONE)
    await set_pin(client, owner)
    code = await new_code(client, outbox)

    assert_error(await verify(client, code), 423, "pin_required")
    assert_error(await verify(client, code, pin=WRONG_PIN), 403, "invalid_pin")
    # Neither refusal used the code up.
    response = await verify(client, code, pin=PIN)
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["userId"] == owner["user_id"]
    assert session["newUser"] is False


async def test_a_malformed_pin_is_refused_before_any_check(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    owner = await register(client, outbox, PHONE)
    await set_pin(client, owner)
    code = await new_code(client, outbox)
    assert_error(await verify(client, code, pin="4802"), 422, "invalid_request")
    assert (await verify(client, code, pin=PIN)).status_code == 200


async def test_pin_attempts_are_limited_even_for_the_right_pin(
    client: httpx.AsyncClient, outbox: Outbox, settings: Settings
) -> None:
    assert settings.pin_attempt_limit == "5/day"
    owner = await register(client, outbox, PHONE)
    await set_pin(client, owner)

    code = await new_code(client, outbox)
    for _ in range(5):
        assert_error(await verify(client, code, pin=WRONG_PIN), 403, "invalid_pin")
    # That code has had its five guesses; a fresh one shows the PIN limit itself.
    code = await new_code(client, outbox)
    response = await verify(client, code, pin=PIN)
    assert_error(response, 429, "rate_limited")
    retry_after = int(response.headers["Retry-After"])
    assert 23 * 3600 < retry_after <= 24 * 3600 + 1
    # The account itself still works from its logged-in device.
    assert (await client.get("/v1/me", headers=bearer(owner))).status_code == 200


async def test_removing_the_pin_lifts_the_requirement(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    owner = await register(client, outbox, PHONE)
    await set_pin(client, owner)
    response = await client.delete("/v1/me/pin", headers=bearer(owner))
    assert response.status_code == 204
    assert await has_pin(client, owner) is False
    assert await stored_pin_hash(container, owner["user_id"]) is None
    assert (await verify(client, await new_code(client, outbox))).status_code == 200


async def test_pin_reset_request_sends_an_sms_only_to_accounts_with_a_pin(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    owner = await register(client, outbox, PHONE)
    await set_pin(client, owner)
    without_pin = "+14155550124"
    await register(client, outbox, without_pin)
    unknown = "+14155550125"
    sent_before = len(outbox.messages())

    answers = []
    for phone in (PHONE, without_pin, unknown):
        response = await client.post("/v1/auth/pin-reset", json={"phone": phone})
        assert response.status_code == 202
        answers.append(response.content)
    assert answers[0] == answers[1] == answers[2]

    new = outbox.messages()[sent_before:]
    assert [(m["to"], m["template"]) for m in new] == [(PHONE, "pin_reset")]
    assert "7 days" in new[0]["body"]


async def test_pin_reset_takes_effect_after_the_waiting_period(
    client: httpx.AsyncClient,
    outbox: Outbox,
    clock: FakeClock,
    settings: Settings,
    container: Container,
) -> None:
    assert settings.pin_reset_delay_days == 7
    owner = await register(client, outbox, PHONE)
    await set_pin(client, owner)
    assert (await client.post("/v1/auth/pin-reset", json={"phone": PHONE})).status_code == 202

    clock.advance(days=7, seconds=-1)
    code = await new_code(client, outbox)
    assert_error(await verify(client, code), 423, "pin_required")

    clock.advance(seconds=1)
    response = await verify(client, code)
    assert response.status_code == 200, response.text
    session = snake_keys(response.json())
    assert session["user_id"] == owner["user_id"]
    assert await has_pin(client, session) is False
    assert await stored_pin_hash(container, owner["user_id"]) is None
    # The PIN is gone for good, not just for that one registration.
    assert (
        await verify(client, await new_code(client, outbox), device="tablet")
    ).status_code == 200


async def test_setting_the_pin_again_cancels_a_pending_reset(
    client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock
) -> None:
    owner = await register(client, outbox, PHONE)
    await set_pin(client, owner)
    assert (await client.post("/v1/auth/pin-reset", json={"phone": PHONE})).status_code == 202
    clock.advance(hours=12)
    await set_pin(client, owner, PIN)  # the owner saw the SMS and kept the PIN

    clock.advance(days=7)
    code = await new_code(client, outbox)
    assert_error(await verify(client, code), 423, "pin_required")
    assert (await verify(client, code, pin=PIN)).status_code == 200
