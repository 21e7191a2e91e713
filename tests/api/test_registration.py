"""Registering with a phone number, end to end through the HTTP API."""

from __future__ import annotations

import httpx

from tests.support import FakeClock, Outbox, bearer, register

PHONE = "+14155550123"


async def test_register_read_code_from_outbox_and_use_token(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    response = await client.post("/v1/auth/code", json={"phone": "+1 (415) 555-0123"})
    assert response.status_code == 202
    # The console provider says where the code is (a login page shows it), never the code.
    assert response.json() == {
        "phone": PHONE,
        "expiresIn": 600,
        "outbox": str(outbox.path.resolve()),
    }
    [sms] = outbox.messages()
    assert sms["to"] == PHONE
    assert sms["template"] == "verification_code"
    assert set(sms) == {"to", "template", "body", "sent_at"}

    response = await client.post(
        "/v1/auth/verify",
        json={
            "phone": PHONE,
            "code": outbox.last_code(PHONE),
            "device": {"name": "Pixel", "platform": "android"},
        },
    )
    assert response.status_code == 200
    session = response.json()
    assert session["newUser"] is True
    assert len(session["accessToken"]) > 40

    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {session['accessToken']}"})
    assert me.status_code == 200
    assert me.json()["id"] == session["userId"]
    assert me.json()["phone"] == PHONE


async def test_second_device_joins_the_same_user(client: httpx.AsyncClient, outbox: Outbox) -> None:
    first = await register(client, outbox, PHONE, device="phone")
    second = await register(client, outbox, PHONE, device="laptop", platform="desktop")
    assert second["new_user"] is False
    assert second["user_id"] == first["user_id"]
    assert second["device_id"] != first["device_id"]
    devices = (await client.get("/v1/devices", headers=bearer(second))).json()["devices"]
    assert {d["name"] for d in devices} == {"phone", "laptop"}
    assert [d["current"] for d in devices if d["name"] == "laptop"] == [True]


async def test_bad_number_gets_invalid_phone(client: httpx.AsyncClient, outbox: Outbox) -> None:
    for phone in ["12345", "+1 555 0100", "hello", "+999999999999"]:
        response = await client.post("/v1/auth/code", json={"phone": phone})
        assert response.status_code == 400, phone
        assert response.json()["error"]["code"] == "invalid_phone"
    assert outbox.messages() == []


async def test_code_is_single_use(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await client.post("/v1/auth/code", json={"phone": PHONE})
    code = outbox.last_code(PHONE)
    body = {"phone": PHONE, "code": code, "device": {"name": "a"}}
    assert (await client.post("/v1/auth/verify", json=body)).status_code == 200
    again = await client.post("/v1/auth/verify", json=body)
    assert again.status_code == 403
    assert again.json()["error"]["code"] == "invalid_code"


async def test_code_expires_after_ten_minutes(
    client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock
) -> None:
    await client.post("/v1/auth/code", json={"phone": PHONE})
    clock.advance(minutes=10, seconds=1)
    response = await client.post(
        "/v1/auth/verify",
        json={"phone": PHONE, "code": outbox.last_code(PHONE), "device": {"name": "a"}},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_code"


async def test_wrong_code_then_right_code(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await client.post("/v1/auth/code", json={"phone": PHONE})
    code = outbox.last_code(PHONE)
    wrong = "000000" if code != "000000" else "111111"
    response = await client.post(
        "/v1/auth/verify", json={"phone": PHONE, "code": wrong, "device": {"name": "a"}}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_code"
    response = await client.post(
        "/v1/auth/verify", json={"phone": PHONE, "code": code, "device": {"name": "a"}}
    )
    assert response.status_code == 200


async def test_five_wrong_guesses_burn_the_code(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await client.post("/v1/auth/code", json={"phone": PHONE})
    code = outbox.last_code(PHONE)
    wrong = [f"{n:06d}" for n in range(10) if f"{n:06d}" != code][:5]
    for guess in wrong:
        response = await client.post(
            "/v1/auth/verify", json={"phone": PHONE, "code": guess, "device": {"name": "a"}}
        )
        assert response.status_code == 403
    response = await client.post(
        "/v1/auth/verify", json={"phone": PHONE, "code": code, "device": {"name": "a"}}
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_attempts"
    assert int(response.headers["Retry-After"]) >= 1


async def test_resend_is_throttled_per_number(client: httpx.AsyncClient, outbox: Outbox) -> None:
    # The test settings allow five codes a minute per number.
    for _ in range(5):
        assert (await client.post("/v1/auth/code", json={"phone": PHONE})).status_code == 202
    response = await client.post("/v1/auth/code", json={"phone": PHONE})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert len(outbox.messages()) == 5
    # Another number is not affected.
    assert (await client.post("/v1/auth/code", json={"phone": "+14155550124"})).status_code == 202


async def test_send_code_is_throttled_per_ip(client: httpx.AsyncClient, outbox: Outbox) -> None:
    statuses = []
    for n in range(21):
        response = await client.post("/v1/auth/code", json={"phone": f"+1415555{n:04d}"})
        statuses.append(response.status_code)
    assert statuses[:20] == [202] * 20
    assert statuses[20] == 429
    assert len(outbox.messages()) == 20
