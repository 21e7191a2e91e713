"""Bad requests get a clear 4xx with ``{"error": {"code", "message"}}``, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pigeon.config import Settings
from tests.support import Outbox, bearer, register

PHONE = "+14155550123"
JSON = {"content-type": "application/json"}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the documented error body; returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "fields"}
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_client_error(response: httpx.Response) -> dict[str, Any]:
    """Some 4xx with the error body: the server understood that the input was bad."""
    assert 400 <= response.status_code < 500, response.text
    return assert_error(response, response.status_code)


@pytest.fixture
async def session(client: httpx.AsyncClient, outbox: Outbox) -> dict[str, Any]:
    return await register(client, outbox, PHONE)


# -- bodies that are not JSON, or not the right JSON ---------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"phone": ',
        b'{"phone": "+14155550123",}',
        b'{"phone": "+14155550123"} trailing',
        b"{'phone': '+14155550123'}",
        b"not json at all",
    ],
)
async def test_malformed_json_is_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/v1/auth/code", content=content, headers=JSON)
    assert_error(response, 400, "malformed_json")


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({}, ["body", "phone"]),
        ({"phone": 14155550123}, ["body", "phone"]),
        ({"phone": None}, ["body", "phone"]),
        ({"phone": ["+14155550123"]}, ["body", "phone"]),
        ({"phone": "+14155550123", "locale": 7}, ["body", "locale"]),
        ({"phone": "+14155550123", "locale": "no such locale!"}, ["body", "locale"]),
        ({"phone": ""}, ["body", "phone"]),
        ({"phone": "+1" * 40}, ["body", "phone"]),
    ],
)
async def test_wrong_types_and_missing_fields_are_422(
    client: httpx.AsyncClient, outbox: Outbox, body: dict[str, Any], location: list[str]
) -> None:
    response = await client.post("/v1/auth/code", json=body)
    error = assert_error(response, 422, "invalid_request")
    assert [f["location"] for f in error["fields"]] == [location]
    assert all(f["problem"] for f in error["fields"])
    assert outbox.messages() == []


@pytest.mark.parametrize("body", [[], "phone", 42, None])
async def test_body_that_is_not_an_object_is_422(client: httpx.AsyncClient, body: Any) -> None:
    response = await client.post("/v1/auth/code", json=body)
    error = assert_error(response, 422, "invalid_request")
    assert error["fields"]


async def test_missing_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/code")
    error = assert_error(response, 422, "invalid_request")
    assert [f["location"] for f in error["fields"]] == [["body"]]


async def test_verify_lists_every_bad_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/verify",
        json={"phone": PHONE, "code": "12ab56", "device": {"name": "", "platform": "toaster"}},
    )
    error = assert_error(response, 422, "invalid_request")
    assert sorted(f["location"] for f in error["fields"]) == [
        ["body", "code"],
        ["body", "device", "name"],
        ["body", "device", "platform"],
    ]


# -- fields that may not be set ------------------------------------------------


async def test_unknown_field_on_profile_update_is_refused(
    client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    for extra, value in [
        ("phone", "+14155550124"),
        ("id", "01JAAAAAAAAAAAAAAAAAAAAAAA"),
        ("has_pin", False),
        ("pin_hash", "x"),
        ("created_at", "2020-01-01T00:00:00Z"),
    ]:
        body = {"name": "Ada", extra: value}
        response = await client.patch("/v1/me", json=body, headers=bearer(session))
        error = assert_error(response, 422, "unknown_field")
        assert [f["location"] for f in error["fields"]] == [["body", extra]]
    me = (await client.get("/v1/me", headers=bearer(session))).json()
    assert me["phone"] == PHONE
    assert me["name"] == ""  # nothing of a refused request was applied


@pytest.mark.parametrize(
    ("extra", "location"),
    [
        ({"user_id": "01JAAAAAAAAAAAAAAAAAAAAAAA"}, ["body", "user_id"]),
        ({"device": {"name": "phone", "trusted": True}}, ["body", "device", "trusted"]),
    ],
)
async def test_unknown_field_on_verify_is_refused(
    client: httpx.AsyncClient, outbox: Outbox, extra: dict[str, Any], location: list[str]
) -> None:
    await client.post("/v1/auth/code", json={"phone": PHONE})
    body = {"phone": PHONE, "code": outbox.last_code(PHONE), "device": {"name": "phone"}, **extra}
    response = await client.post("/v1/auth/verify", json=body)
    error = assert_error(response, 422, "unknown_field")
    assert location in [f["location"] for f in error["fields"]]
    # The refused request did not use up the code.
    body = {"phone": PHONE, "code": outbox.last_code(PHONE), "device": {"name": "phone"}}
    assert (await client.post("/v1/auth/verify", json=body)).status_code == 200


# -- body size -----------------------------------------------------------------


def padded(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (with an unknown field as padding)."""
    head, tail = b'{"phone": "+14155550123", "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_body_at_the_limit_is_read(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.post(
        "/v1/auth/code", content=padded(settings.max_body_bytes), headers=JSON
    )
    assert_error(response, 422, "unknown_field")


async def test_body_over_the_limit_by_content_length_is_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/v1/auth/code", content=padded(settings.max_body_bytes + 1), headers=JSON
    )
    error = assert_error(response, 413, "body_too_large")
    assert str(settings.max_body_bytes) in error["message"]


async def test_declared_length_over_the_limit_is_413_before_reading(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/v1/auth/code",
        content=b"{}",
        headers={**JSON, "content-length": str(settings.max_body_bytes * 1000)},
    )
    assert_error(response, 413, "body_too_large")


async def test_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, outbox: Outbox, settings: Settings
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"phone": "+14155550123", "pad": "'
        for _ in range(settings.max_body_bytes // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post("/v1/auth/code", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "body_too_large")
    assert outbox.messages() == []


async def test_small_streamed_body_is_accepted(client: httpx.AsyncClient, outbox: Outbox) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"phone": '
        yield b'"+14155550123"}'

    response = await client.post("/v1/auth/code", content=chunks(), headers=JSON)
    assert response.status_code == 202, response.text
    assert outbox.last_code(PHONE)


# -- routes and methods --------------------------------------------------------


# "/" is the web client (tests/api/test_web_static.py); a missing asset is a 404 like the rest.
@pytest.mark.parametrize(
    "path", ["/assets/nothing.js", "/v1", "/v1/nope", "/v2/me", "/v1/auth/code/extra"]
)
async def test_unknown_route_is_404(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/auth/code", "POST"),
        ("DELETE", "/v1/auth/verify", "POST"),
        ("PUT", "/v1/me", "DELETE, GET, PATCH"),
        ("GET", "/v1/me/pin", "DELETE, PUT"),
        ("POST", "/v1/devices", "GET"),
        ("POST", "/health", "GET"),
    ],
)
async def test_wrong_method_is_405(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed


# -- authentication ------------------------------------------------------------


# The header, and the code: no bearer token at all is missing_token, a bearer token
# the server does not know is invalid_token.
BAD_AUTHORIZATIONS = [
    (None, "missing_token"),
    ("", "missing_token"),
    ("Bearer", "missing_token"),
    ("Bearer ", "missing_token"),
    ("Basic dXNlcjpwYXNz", "missing_token"),
    ("Token pga_abc", "missing_token"),
    ("pga_abc", "missing_token"),
    ("Bearer pga_unknown", "invalid_token"),
    ("Bearer pga_a pga_b", "invalid_token"),
    ("Bearer " + "x" * 5000, "invalid_token"),
]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/me"),
        ("PATCH", "/v1/me"),
        ("GET", "/v1/devices"),
        ("DELETE", "/v1/me/pin"),
        ("POST", "/v1/auth/logout"),
        ("GET", "/v1/users/01JAAAAAAAAAAAAAAAAAAAAAAA"),
    ],
)
async def test_missing_malformed_or_unknown_token_is_401(
    client: httpx.AsyncClient, session: dict[str, Any], method: str, path: str
) -> None:
    for authorization, code in BAD_AUTHORIZATIONS:
        headers = {} if authorization is None else {"authorization": authorization}
        response = await client.request(method, path, headers=headers, json={})
        error = assert_error(response, 401)
        assert error["code"] == code, authorization
        assert response.headers["www-authenticate"] == "Bearer", authorization
    # The same request with the session's token gets past authentication.
    response = await client.request(method, path, headers=bearer(session), json={})
    assert response.status_code != 401, response.text


async def test_token_in_the_query_string_is_not_accepted(
    client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    token = session["access_token"]
    for params in [{"access_token": token}, {"token": token}, {"authorization": f"Bearer {token}"}]:
        response = await client.get("/v1/me", params=params)
        assert_error(response, 401, "missing_token")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_revoked_token_is_401(client: httpx.AsyncClient, session: dict[str, Any]) -> None:
    assert (await client.post("/v1/auth/logout", headers=bearer(session))).status_code == 204
    response = await client.get("/v1/me", headers=bearer(session))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_unauthenticated_caller_learns_nothing_about_the_body(
    client: httpx.AsyncClient,
) -> None:
    for body in [{"phone": "+14155550124"}, {"name": 7}, {"name": "Ada"}]:
        response = await client.patch("/v1/me", json=body)
        assert_error(response, 401, "missing_token")


# -- hostile JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"phone": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"phone": "+14155550123", "locale": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}",
    ],
    ids=["array", "in-field", "objects"],
)
async def test_deeply_nested_json_is_a_client_error(
    client: httpx.AsyncClient, outbox: Outbox, content: bytes
) -> None:
    assert len(content) <= 64 * 1024  # refused for its nesting, not its size
    assert_client_error(await client.post("/v1/auth/code", content=content, headers=JSON))
    assert outbox.messages() == []


@pytest.mark.parametrize(
    "content",
    [
        b'{"phone": 1' + b"0" * 5_000 + b"}",
        b'{"phone": "+14155550123", "locale": -' + b"9" * 5_000 + b"}",
        b'{"phone": 1e999999}',
        b'{"phone": NaN}',
        b'{"phone": Infinity}',
    ],
    ids=["5000-digits", "negative-5000-digits", "huge-exponent", "nan", "infinity"],
)
async def test_huge_and_special_numbers_are_a_client_error(
    client: httpx.AsyncClient, content: bytes
) -> None:
    assert_client_error(await client.post("/v1/auth/code", content=content, headers=JSON))


async def test_huge_integer_in_a_nested_field_is_a_client_error(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await client.post("/v1/auth/code", json={"phone": PHONE})
    body = {"phone": PHONE, "code": outbox.last_code(PHONE), "device": {"name": 10**100}}
    assert_error(await client.post("/v1/auth/verify", json=body), 422, "invalid_request")


# JSON escapes (as sent on the wire) that decode to text no database can store.
BAD_STRINGS = [rb"\ud800", rb"\udfff", rb"a\udc00b", rb"\u0000", rb"Ada\u0000Lovelace"]


def json_with(field: str, raw: bytes, **others: str) -> bytes:
    """A JSON object whose ``field`` is the raw (already escaped) string ``raw``."""
    parts = [f'"{key}": "{value}"'.encode() for key, value in others.items()]
    parts.append(f'"{field}": "'.encode() + raw + b'"')
    return b"{" + b", ".join(parts) + b"}"


@pytest.mark.parametrize("field", ["name", "about", "location"])
async def test_bad_characters_in_profile_text_are_refused(
    client: httpx.AsyncClient, session: dict[str, Any], field: str
) -> None:
    for raw in BAD_STRINGS:
        response = await client.patch(
            "/v1/me", content=json_with(field, raw), headers={**JSON, **bearer(session)}
        )
        error = assert_error(response, 422, "invalid_request")
        assert [f["location"] for f in error["fields"]] == [["body", field]], raw
    me = await client.get("/v1/me", headers=bearer(session))
    assert me.status_code == 200
    assert me.json()[field] == {"name": "", "about": "", "location": None}[field]  # unchanged


async def test_bad_characters_in_a_device_name_are_refused(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await client.post("/v1/auth/code", json={"phone": PHONE})
    code = outbox.last_code(PHONE)
    for raw in BAD_STRINGS:
        content = (
            f'{{"phone": "{PHONE}", "code": "{code}", "device": '.encode()
            + json_with("name", raw)
            + b"}"
        )
        response = await client.post("/v1/auth/verify", content=content, headers=JSON)
        error = assert_error(response, 422, "invalid_request")
        assert [f["location"] for f in error["fields"]] == [["body", "device", "name"]], raw
    # None of them used up the code.
    body = {"phone": PHONE, "code": code, "device": {"name": "phone"}}
    assert (await client.post("/v1/auth/verify", json=body)).status_code == 200


@pytest.mark.parametrize(
    ("path", "field", "others"),
    [
        ("/v1/auth/code", "phone", {}),
        ("/v1/auth/code", "locale", {"phone": PHONE}),
        ("/v1/auth/pin-reset", "phone", {}),
        ("/v1/auth/refresh", "refresh_token", {}),
    ],
)
async def test_bad_characters_in_other_fields_are_a_client_error(
    client: httpx.AsyncClient, outbox: Outbox, path: str, field: str, others: dict[str, str]
) -> None:
    for raw in BAD_STRINGS:
        response = await client.post(path, content=json_with(field, raw, **others), headers=JSON)
        assert_client_error(response)
    assert outbox.messages() == []


async def test_invalid_utf8_is_a_client_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/code", content=b'{"phone": "\xff\xfe"}', headers=JSON)
    assert_client_error(response)


STRANGE_IDS = [
    "%00",
    "a%00b",
    "%ED%A0%80",
    "%C3%BC",
    "A" * 5000,
    "not-an-id",
    "01JAAAAAAAAAAAAAAAAAAAAAA%00",
]


async def test_strange_ids_in_the_path_are_404(
    client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    for strange in STRANGE_IDS:
        response = await client.get(f"/v1/users/{strange}", headers=bearer(session))
        assert_error(response, 404, "user_not_found")
        response = await client.delete(f"/v1/devices/{strange}", headers=bearer(session))
        assert_error(response, 404, "device_not_found")
    devices = (await client.get("/v1/devices", headers=bearer(session))).json()["devices"]
    assert len(devices) == 1


# -- request ids ---------------------------------------------------------------


async def test_request_id_is_echoed_when_well_formed(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nope", headers={"x-request-id": "abc-123.DEF_4"})
    assert response.headers["x-request-id"] == "abc-123.DEF_4"


@pytest.mark.parametrize(
    "incoming", [b"", b"has space", b"x" * 65, b"a/b", "\u00fcn\u00efcode".encode("latin-1")]
)
async def test_request_id_is_replaced_when_not_well_formed(
    client: httpx.AsyncClient, incoming: bytes
) -> None:
    response = await client.get("/health", headers={"x-request-id": incoming})
    assert response.status_code == 200
    assert response.headers["x-request-id"].encode("latin-1") != incoming
    assert len(response.headers["x-request-id"]) == 32


async def test_every_response_has_a_request_id(
    client: httpx.AsyncClient, session: dict[str, Any], settings: Settings
) -> None:
    responses = [
        await client.get("/health"),
        await client.get("/metrics"),
        await client.get("/openapi.json"),
        await client.get("/v1/me", headers=bearer(session)),
        await client.get("/v1/me"),
        await client.get("/v1/nope"),
        await client.delete("/v1/auth/code"),
        await client.post("/v1/auth/code", content=b"{", headers=JSON),
        await client.post("/v1/auth/code", json={}),
        await client.post("/v1/auth/code", content=padded(settings.max_body_bytes + 1)),
    ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), [(r.request.url, r.status_code) for r in responses]
    assert len(set(ids)) == len(ids)
