"""What a newcomer reads when a request is wrong, and the one spelling of field names."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.api.test_errors import assert_error
from tests.support import Outbox, bearer, register

PHONE = "+14155550123"


async def test_a_token_without_its_scheme_says_the_scheme_is_missing(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    session = await register(client, outbox, PHONE)
    response = await client.get("/v1/me", headers={"Authorization": session["access_token"]})
    error = assert_error(response, 401, "missing_token")
    assert "no scheme" in error["message"]
    assert "Bearer <access token>" in error["message"]

    other = await client.get(
        "/v1/me", headers={"Authorization": f"Token {session['access_token']}"}
    )
    assert "must be Bearer" in assert_error(other, 401, "missing_token")["message"]
    nothing = assert_error(await client.get("/v1/me"), 401, "missing_token")
    assert "Bearer <access token>" in nothing["message"]


async def test_a_name_too_long_is_counted_in_characters(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    session = await register(client, outbox, PHONE)
    response = await client.patch("/v1/me", json={"name": "x" * 65}, headers=bearer(session))
    error = assert_error(response, 422, "invalid_request")
    [field] = error["fields"]
    assert field["location"] == ["body", "name"]
    assert "at most 64 characters" in field["problem"]
    assert "items" not in field["problem"]


def _snake_case_names(schema: Any) -> set[str]:
    """Every property name with an underscore anywhere in an OpenAPI schema."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for name in schema.get("properties", {}):
            if "_" in name:
                found.add(name)
        for value in schema.values():
            found |= _snake_case_names(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _snake_case_names(value)
    return found


async def test_every_field_of_the_http_api_is_camel_case(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert _snake_case_names(document["components"]["schemas"]) == set()


async def test_sessions_profiles_and_devices_speak_camel_case(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    sent = await client.post("/v1/auth/code", json={"phone": PHONE})
    assert set(sent.json()) == {"phone", "expiresIn", "outbox"}
    verified = await client.post(
        "/v1/auth/verify",
        json={"phone": PHONE, "code": outbox.last_code(PHONE), "device": {"name": "laptop"}},
    )
    session = verified.json()
    assert set(session) == {
        "userId",
        "deviceId",
        "accessToken",
        "refreshToken",
        "tokenType",
        "expiresIn",
        "newUser",
    }
    headers = {"Authorization": f"Bearer {session['accessToken']}"}
    me = (await client.get("/v1/me", headers=headers)).json()
    assert {"hasPin", "createdAt"} <= set(me)
    [device] = (await client.get("/v1/devices", headers=headers)).json()["devices"]
    assert {"createdAt", "lastSeenAt"} <= set(device)
    assert not any(re.search("_", key) for key in [*session, *me, *device])


async def test_the_snake_case_names_of_01_are_still_accepted_on_input(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    session = await register(client, outbox, PHONE)
    old_spelling = await client.post(
        "/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert old_spelling.status_code == 200, old_spelling.text
    new_spelling = await client.post(
        "/v1/auth/refresh", json={"refreshToken": old_spelling.json()["refreshToken"]}
    )
    assert new_spelling.status_code == 200, new_spelling.text
    assert new_spelling.json()["deviceId"] == session["device_id"]
