"""Profiles (own and others'), plus the health and metrics endpoints."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from pigeon.bootstrap import Container
from tests.support import Outbox, bearer, register

PHONE = "+14155550123"
OTHER_PHONE = "+14155550199"


async def get_me(client: httpx.AsyncClient, session: dict[str, Any]) -> dict[str, Any]:
    response = await client.get("/v1/me", headers=bearer(session))
    assert response.status_code == 200, response.text
    me: dict[str, Any] = response.json()
    return me


async def patch_me(
    client: httpx.AsyncClient, session: dict[str, Any], body: dict[str, Any]
) -> httpx.Response:
    return await client.patch("/v1/me", json=body, headers=bearer(session))


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_patch_me_changes_profile_fields(client: httpx.AsyncClient, outbox: Outbox) -> None:
    session = await register(client, outbox, PHONE)
    fresh = await get_me(client, session)
    assert (fresh["name"], fresh["about"], fresh["country"], fresh["location"]) == (
        "",
        "",
        None,
        None,
    )

    changes = {"name": "Ada", "about": "Analytical", "country": "GB", "location": "London"}
    response = await patch_me(client, session, changes)
    assert response.status_code == 200, response.text
    me = await get_me(client, session)
    assert response.json() == me
    assert {key: me[key] for key in changes} == changes
    assert me["phone"] == PHONE

    # Only the fields sent change.
    response = await patch_me(client, session, {"about": "Poetical science"})
    assert response.status_code == 200
    me = await get_me(client, session)
    assert (me["name"], me["about"], me["country"]) == ("Ada", "Poetical science", "GB")


async def test_null_clears_a_field(client: httpx.AsyncClient, outbox: Outbox) -> None:
    session = await register(client, outbox, PHONE)
    changes = {"name": "Ada", "about": "Analytical", "country": "GB", "location": "London"}
    assert (await patch_me(client, session, changes)).status_code == 200

    response = await patch_me(client, session, dict.fromkeys(changes))
    assert response.status_code == 200, response.text
    me = await get_me(client, session)
    assert (me["name"], me["about"], me["country"], me["location"]) == ("", "", None, None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", OTHER_PHONE),
        ("id", "01JZZZZZZZZZZZZZZZZZZZZZZZ"),
        ("has_pin", True),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("role", "admin"),
        ("pin_hash", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"),
    ],
)
async def test_protected_fields_are_refused(
    client: httpx.AsyncClient, outbox: Outbox, field: str, value: Any
) -> None:
    session = await register(client, outbox, PHONE)
    before = await get_me(client, session)

    # Sent together with an allowed field: the whole request is refused.
    response = await patch_me(client, session, {"name": "Mallory", field: value})
    assert_error(response, 422, "unknown_field")
    assert ["body", field] in [f["location"] for f in response.json()["error"]["fields"]]
    assert await get_me(client, session) == before


async def test_field_limits_count_code_points(client: httpx.AsyncClient, outbox: Outbox) -> None:
    session = await register(client, outbox, PHONE)
    # U+1F426 (bird) is one code point, four UTF-8 bytes and two UTF-16 units.
    for field, limit in [("name", 64), ("about", 140), ("location", 100)]:
        response = await patch_me(client, session, {field: "\U0001f426" * limit})
        assert response.status_code == 200, (field, response.text)
        response = await patch_me(client, session, {field: "x" * (limit + 1)})
        assert_error(response, 422, "invalid_request")
        assert (await get_me(client, session))[field] == "\U0001f426" * limit


@pytest.mark.parametrize("country", ["gb", "GBR", "G", "", "G1", "ZZ", "XX", "UK", 44])
async def test_bad_country_is_refused(
    client: httpx.AsyncClient, outbox: Outbox, country: Any
) -> None:
    session = await register(client, outbox, PHONE)
    assert (await patch_me(client, session, {"country": "DE"})).status_code == 200
    assert_error(await patch_me(client, session, {"country": country}), 422, "invalid_request")
    assert (await get_me(client, session))["country"] == "DE"


async def test_nul_character_is_refused_on_every_engine(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    session = await register(client, outbox, PHONE)
    for field in ("name", "about", "location"):
        response = await patch_me(client, session, {field: "Ada\u0000Lovelace"})
        assert_error(response, 422, "invalid_request")
    await client.post("/v1/auth/code", json={"phone": PHONE})
    body = {"phone": PHONE, "code": outbox.last_code(PHONE), "device": {"name": "a\u0000b"}}
    assert_error(await client.post("/v1/auth/verify", json=body), 422, "invalid_request")


NAMES = [
    "Zoë Ångström",
    "李小龍",
    "Владимир Набоков",
    "محمد عبد الوهاب",
    "שלום עליכם",
    "नमस्ते दुनिया",
    "e\u0301 stays decomposed",  # not normalised to U+00E9
    "\U0001f469\U0001f3fd\u200d\U0001f4bb dev",  # woman technologist, medium skin tone
    "\U0001f1eb\U0001f1f7 \U0001f426\u2728",
    "\U0001d518\U0001d52b\U0001d526 outside the BMP",  # Fraktur letters
]


async def test_unicode_names_round_trip_exactly(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    session = await register(client, outbox, PHONE)
    viewer = await register(client, outbox, OTHER_PHONE)
    for name in NAMES:
        about = f"about {name}"
        response = await patch_me(client, session, {"name": name, "about": about})
        assert response.status_code == 200, response.text
        assert response.json()["name"].encode() == name.encode()
        assert (await get_me(client, session))["name"].encode() == name.encode()
        public = await client.get(f"/v1/users/{session['user_id']}", headers=bearer(viewer))
        assert public.json()["name"].encode() == name.encode()
        assert public.json()["about"].encode() == about.encode()
        async with container.engine.connect() as conn:
            query = sa.text("SELECT name FROM users WHERE id = :id")
            stored = (await conn.execute(query, {"id": session["user_id"]})).scalar_one()
        assert stored.encode() == name.encode()


async def test_public_profile_shows_only_id_name_about_and_photo(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    alice = await register(client, outbox, PHONE)
    bob = await register(client, outbox, OTHER_PHONE)
    profile = {"name": "Alice", "about": "Hi", "country": "NL", "location": "Keizersgracht 1"}
    assert (await patch_me(client, alice, profile)).status_code == 200

    response = await client.get(f"/v1/users/{alice['user_id']}", headers=bearer(bob))
    assert response.status_code == 200
    # And the photo, which Alice has not set (tests/people/test_photos.py).
    assert response.json() == {
        "id": alice["user_id"],
        "name": "Alice",
        "about": "Hi",
        "photo": None,
    }
    for private in (PHONE, PHONE[1:], "Keizersgracht", "NL"):
        assert private not in response.text


async def test_unknown_user_is_not_found(client: httpx.AsyncClient, outbox: Outbox) -> None:
    session = await register(client, outbox, PHONE)
    response = await client.get("/v1/users/01JZZZZZZZZZZZZZZZZZZZZZZZ", headers=bearer(session))
    assert_error(response, 404, "user_not_found")


async def test_profiles_need_a_token(client: httpx.AsyncClient, outbox: Outbox) -> None:
    session = await register(client, outbox, PHONE)
    for method, path in [
        ("GET", "/v1/me"),
        ("PATCH", "/v1/me"),
        ("GET", f"/v1/users/{session['user_id']}"),
    ]:
        response = await client.request(method, path, json={"name": "x"})
        assert_error(response, 401, "missing_token")
        response = await client.request(
            method, path, json={"name": "x"}, headers={"Authorization": "Bearer pga_nonsense"}
        )
        assert_error(response, 401, "invalid_token")
    assert (await get_me(client, session))["name"] == ""


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    node = body.pop("node")
    assert body == {"status": "ok", "database": "ok", "bus": "memory"}
    assert node.startswith(f"{os.uname().nodename}-{os.getpid()}-")  # host, process, random


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics(client: httpx.AsyncClient, outbox: Outbox) -> None:
    alice = await register(client, outbox, PHONE, device="phone")
    laptop = await register(client, outbox, PHONE, device="laptop")
    bob = await register(client, outbox, OTHER_PHONE)
    await client.get(f"/v1/users/{bob['user_id']}", headers=bearer(alice))
    await client.delete("/v1/devices/01JZZZZZZZZZZZZZZZZZZZZZZZ", headers=bearer(alice))
    await client.get(f"/v1/nothing-here/{alice['user_id']}")

    response = await client.get("/metrics")
    assert response.status_code == 200
    samples = _samples(response.text)
    codes_sent = len([m for m in outbox.messages() if m["template"] == "verification_code"])
    assert codes_sent == 3
    sms = ("pigeon_sms_sent_total", (("template", "verification_code"),))
    assert samples[sms] == codes_sent
    assert samples[("pigeon_active_devices", ())] == 3

    requests = {
        dict(labels)["route"]: value
        for (name, labels), value in samples.items()
        if name == "pigeon_http_requests_total"
    }
    assert requests["/v1/auth/code"] == 3
    assert requests["/v1/users/{user_id}"] == 1
    assert requests["/v1/devices/{device_id}"] == 1
    for raw_id in (alice["user_id"], bob["user_id"], laptop["device_id"], "01JZZZZZZZZZZZZZ"):
        assert raw_id not in response.text

    # The device gauge is read at scrape time.
    await client.post("/v1/auth/logout", headers=bearer(laptop))
    samples = _samples((await client.get("/metrics")).text)
    assert samples[("pigeon_active_devices", ())] == 2
