"""Attack suite: hostile input on every route that takes a body and every WebSocket command.

Each field of each request is replaced in turn by deep nesting (100,000 ``[``),
a 5,001-digit integer, a lone surrogate or a NUL; bodies and frames go past
their size limits. The answer is always a clear 4xx, an error frame or the
documented close code; never a 5xx. After each abuse /health is 200 and a
normal message still goes through. Text that is storable (CRLF, U+202E) is
stored and sent back byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from pigeon.bootstrap import Container
from pigeon.domain.ids import new_id
from pigeon.gateway.frames import COMMANDS
from pigeon.storage.schema import chats, devices, uploads, users
from tests.gateway.conftest import Connect, Register
from tests.live import LiveServer, WsClient
from tests.support import bearer, online

MIB = 1024 * 1024
PDF = b"%PDF-1.4\n%hostile\n" + bytes(range(32, 127)) * 4 + b"\n%%EOF\n"
MARK = "@@ABUSE@@"

# Raw JSON put where a value belongs. Surrogates and NUL as the escapes a client sends.
DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INTEGER = "1" + "0" * 5_000  # 10**5000 as a literal
LONE_SURROGATES = ['"\\ud800"', '"a\\udfffb"']
NUL = '"a\\u0000b"'
ABUSES: dict[str, list[str]] = {
    "deep-nesting": [DEEP],
    "huge-integer": [HUGE_INTEGER],
    "lone-surrogate": LONE_SURROGATES,
    "nul": [NUL],
}
STRING_ONLY = {"lone-surrogate", "nul"}


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def mutations(template: Any, abuse: str) -> Iterator[tuple[str, str]]:
    """(field, JSON text) for every field of ``template`` replaced by each raw value."""
    for path, value in leaves(template):
        if abuse in STRING_ONLY and not isinstance(value, str):
            continue
        body = copy.deepcopy(template)
        target = body
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = MARK
        text = json.dumps(body)
        for raw in ABUSES[abuse]:
            yield ".".join(map(str, path)), text.replace(json.dumps(MARK), raw)


def bad_text(value: str) -> bool:
    return "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value)


async def assert_still_serving(
    server: LiveServer, connect: Connect, sender: dict[str, Any], receiver: dict[str, Any]
) -> None:
    """/health is 200 and a message from ``sender`` reaches ``receiver``."""
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/health")).status_code == 200
    a, b = await online(connect, sender), await online(connect, receiver)
    chat = (await a.call("createChat", {"participants": [receiver["user_id"]]}))["chatId"]
    text = f"still fine {new_id()}"
    await a.call("sendMessage", {"chatId": chat, "clientMessageId": new_id(), "message": text})
    for _ in range(20):
        event = await b.next_event("message")
        if event["data"]["message"] == text:
            break
    else:
        raise AssertionError("the normal message did not arrive")
    await a.close()
    await b.close()


def assert_error_body(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert isinstance(error["code"], str)
    assert error["message"]


# -- HTTP ------------------------------------------------------------------------------


@dataclass
class Route:
    method: str
    path: str
    template: Any = None  # a valid JSON body; None for raw bytes
    token: bool = False


def json_routes(session: dict[str, Any]) -> list[Route]:
    phone = "+14155550177"
    return [
        Route("POST", "/v1/auth/code", {"phone": phone, "locale": "en"}),
        Route(
            "POST",
            "/v1/auth/verify",
            {
                "phone": phone,
                "code": "123456",
                "device": {"name": "phone", "platform": "android"},
                "pin": "654321",
            },
        ),
        Route("POST", "/v1/auth/refresh", {"refresh_token": session["refresh_token"]}),
        Route("POST", "/v1/auth/pin-reset", {"phone": phone, "locale": "en"}),
        Route(
            "PATCH",
            "/v1/me",
            {"name": "Ada", "about": "hi", "country": "GB", "location": "London"},
            token=True,
        ),
        Route("PUT", "/v1/me/pin", {"pin": "123456"}, token=True),
        Route("POST", "/v1/uploads", {"size": 10, "sha256": "0" * 64, "fileName": "a.pdf"}, True),
        Route("POST", "/v1/me/deletion-code", {"locale": "en"}, token=True),
        # Alice on her own list is refused too: no mutation can make a list.
        Route(
            "POST",
            "/v1/broadcast-lists",
            {"name": "news", "recipients": [session.get("user_id", "x")]},
            token=True,
        ),
        Route(
            "PATCH",
            "/v1/broadcast-lists/{list_id}",
            {"name": "news", "recipients": [session.get("user_id", "x")]},
            token=True,
        ),
        Route(
            "PUT",
            "/v1/devices/{device_id}/push",
            {
                "kind": "webpush",
                "endpoint": "https://93.184.215.14/push/abc",
                "keys": {
                    "p256dh": "BPmNHE3cCc2VJ8Xd0hq2hV9J1z8hM0b8yQm0",
                    "auth": "AAAAAAAAAAAAAAAAAAAAAA",
                },
            },
            token=True,
        ),
        Route("PATCH", "/v1/me/notifications", {"push": True, "previews": False}, token=True),
        Route("PUT", "/v1/chats/{chat_id}/mute", {"duration": "8h"}, token=True),
        # People (issue 16).
        Route("POST", "/v1/contacts/lookup", {"phones": ["+14155550100", "4155550101"]}, True),
        Route(
            "PATCH",
            "/v1/me/privacy",
            {
                "lastSeen": "contacts",
                "photo": "nobody",
                "about": "everyone",
                "statuses": "except",
                "readReceipts": True,
                "groups": "contacts",
                "statusesExcept": ["01JQ80G5H6J7K8M9N0P1Q2R3S4"],
                "statusesOnly": ["01JQ80G5H6J7K8M9N0P1Q2R3S4"],
            },
            token=True,
        ),
        Route("PUT", "/v1/me/photo", {"attachmentId": "01JQ80G5H6J7K8M9N0P1Q2R3S4"}, True),
        Route(
            "POST", "/v1/statuses", {"text": "hi", "backgroundColor": "#112233", "font": 1}, True
        ),
        Route("PUT", "/v1/me/email", {"email": "ada@example.org", "locale": "en"}, True),
        Route("POST", "/v1/me/email/verify", {"code": "123456"}, True),
        Route("POST", "/v1/auth/pin-reset/email", {"phone": phone, "locale": "en"}),
        Route("POST", "/v1/auth/pin-reset/confirm", {"phone": phone, "code": "123456"}),
    ]


BINARY_ROUTES = {("POST", "/v1/attachments"), ("PATCH", "/v1/uploads/{upload_id}")}
# Fields the server documents as cleaned rather than refused: a display name
# loses its control characters ("file" if nothing is left).
SANITIZED = {("/v1/uploads", "fileName")}


def test_every_route_with_a_body_is_attacked(app: FastAPI) -> None:
    documented = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if method in {"post", "patch", "put"} and "requestBody" in operation
    }
    session = {"refresh_token": "x"}
    attacked = {(r.method, r.path) for r in json_routes(session)} | BINARY_ROUTES
    assert documented == attacked


@pytest.mark.parametrize("abuse", list(ABUSES))
async def test_hostile_fields_in_http_bodies_get_a_clear_4xx(
    abuse: str,
    client: httpx.AsyncClient,
    user: Register,
    server: LiveServer,
    connect: Connect,
    container: Container,
) -> None:
    alice, bob = await user(), await user()
    tried = 0
    for route in json_routes(alice):
        headers = {"content-type": "application/json", **(bearer(alice) if route.token else {})}
        bodies = list(mutations(route.template, abuse))
        if abuse == "deep-nesting":
            bodies.append(("<whole body>", "[" * 100_000))
        for field, body in bodies:
            response = await client.request(
                route.method, route.path, content=body.encode(), headers=headers
            )
            tried += 1
            if (route.path, field) in SANITIZED and response.status_code == 201:
                upload_id = response.json()["uploadId"]
                async with container.engine.connect() as conn:
                    name = await conn.scalar(
                        sa.select(uploads.c.file_name).where(uploads.c.id == upload_id)
                    )
                assert isinstance(name, str)
                assert not bad_text(name)
            else:
                assert_error_body(response)
            assert (await client.get("/health")).status_code == 200, (route.path, field)
    assert tried >= 15

    await attack_binary_routes(client, alice, abuse)
    # Nothing was changed or created by any of it.
    me = (await client.get("/v1/me", headers=bearer(alice))).json()
    assert (me["name"], me["about"], me["country"], me["hasPin"]) == ("", "", None, False)
    async with container.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(users)) == 2
    await assert_still_serving(server, connect, alice, bob)


async def attack_binary_routes(
    client: httpx.AsyncClient, session: dict[str, Any], abuse: str
) -> None:
    """Raw-body routes: the abusive text as the file, or in the percent-encoded file name."""
    if abuse in STRING_ONLY:
        raw = {"nul": "%00", "lone-surrogate": "%ED%A0%80"}[abuse]
        body, names = PDF, [f"a{raw}b.pdf", raw]
    else:
        body, names = ABUSES[abuse][0].encode(), ["abuse.txt"]
    digest = hashlib.sha256(body).hexdigest()
    for name in names:
        response = await client.post(
            "/v1/attachments",
            content=body,
            headers={**bearer(session), "X-Content-SHA256": digest, "X-File-Name": name},
        )
        assert response.status_code < 500, response.text
        if response.status_code == 201:  # a file like any other, with a clean name
            assert not bad_text(response.json()["fileName"])
        else:
            assert_error_body(response)
        start = await client.post(
            "/v1/uploads",
            json={"size": len(body), "sha256": digest, "fileName": name},
            headers=bearer(session),
        )
        assert start.status_code == 201, start.text
        part = await client.patch(
            f"/v1/uploads/{start.json()['uploadId']}",
            content=body,
            headers={**bearer(session), "Upload-Offset": "0"},
        )
        assert part.status_code < 500, part.text
        if part.status_code >= 400:
            assert_error_body(part)
        elif part.json()["attachment"] is not None:
            assert not bad_text(part.json()["attachment"]["fileName"])
        assert (await client.get("/health")).status_code == 200


async def test_bodies_over_2_mib_are_refused_with_413_or_a_clear_4xx(
    client: httpx.AsyncClient, user: Register, server: LiveServer, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    padding = "x" * (2 * MIB + 1)
    for route in json_routes(alice):
        path, _ = next(leaves(route.template))
        body = copy.deepcopy(route.template)
        target = body
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = padding
        headers = {"content-type": "application/json", **(bearer(alice) if route.token else {})}
        response = await client.request(route.method, route.path, json=body, headers=headers)
        assert response.status_code == 413, (route.path, response.text)
        assert response.json()["error"]["code"] == "body_too_large"
        assert (await client.get("/health")).status_code == 200

    big = b"\0" * (2 * MIB + 1)
    wrong_hash = hashlib.sha256(b"something else").hexdigest()
    response = await client.post(
        "/v1/attachments", content=big, headers={**bearer(alice), "X-Content-SHA256": wrong_hash}
    )
    assert_error_body(response)
    start = await client.post(
        "/v1/uploads", json={"size": 10, "sha256": wrong_hash}, headers=bearer(alice)
    )
    response = await client.patch(
        f"/v1/uploads/{start.json()['uploadId']}",
        content=big,
        headers={**bearer(alice), "Upload-Offset": "0"},
    )
    assert_error_body(response)
    await assert_still_serving(server, connect, alice, bob)


ABSURD_LENGTHS = ["1" + "0" * 5_000, "99999999999999999999", "\u00b2", "-1", "1e3", " 2"]


async def test_absurd_content_length_headers_are_a_clear_4xx(
    client: httpx.AsyncClient, user: Register, server: LiveServer, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    for length in ABSURD_LENGTHS:
        headers = {
            b"authorization": f"Bearer {alice['access_token']}".encode(),
            b"content-type": b"application/json",
            b"content-length": length.encode("latin-1"),
        }
        for route in json_routes(alice):
            response = await client.request(
                route.method, route.path, content=b"{}", headers=headers
            )
            assert_error_body(response)
        digest = hashlib.sha256(b"{}").hexdigest()
        response = await client.post(
            "/v1/attachments",
            content=b"{}",
            headers={**headers, b"x-content-sha256": digest.encode()},
        )
        # The upload route streams: a length of digits over the limit is refused before
        # reading; any other is ignored, and the body (it matches its hash) is stored.
        if length.isascii() and length.isdigit():
            assert_error_body(response)
            assert response.status_code == 413, (length, response.text)
            assert response.json()["error"]["code"] == "attachment_too_large"
        else:
            assert response.status_code == 201, (length, response.text)
        assert (await client.get("/health")).status_code == 200, length
        # Over a real server too (uvicorn refuses most of these itself).
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /v1/auth/code HTTP/1.1\r\nHost: pigeon\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + length.encode("latin-1") + b"\r\n\r\n{}"
        )
        await writer.drain()
        status = (await asyncio.wait_for(reader.readline(), 10)).split()
        writer.close()
        assert 400 <= int(status[1]) < 500, (length, status)
    await assert_still_serving(server, connect, alice, bob)


# -- WebSocket --------------------------------------------------------------------------


def ws_templates(group: str, bob: str, carol: str) -> dict[str, dict[str, Any]]:
    """A valid ``data`` for every command a connected client may send."""
    return {
        "ping": {},
        "getChats": {},
        "createChat": {"participants": [bob], "name": "Team"},
        "modifyChatParticipants": {"chatId": group, "userId": carol, "operation": "ADD"},
        "setRole": {"chatId": group, "userId": bob, "role": "admin"},
        "updateChat": {"chatId": group, "name": "Team 2"},
        "sendMessage": {
            "chatId": group,
            "clientMessageId": "c-1",
            "message": "hello",
            "attachments": [new_id()],
            "replyTo": {"messageId": new_id(), "excerpt": "you said"},
            "forwardedFrom": {"chatId": group, "messageId": new_id()},
            "mentions": [bob],
        },
        "ack": {"upTo": 0},
        "markRead": {"chatId": group, "upToSeq": 1},
        "typing": {"chatId": group, "state": "composing"},
        "getChat": {"chatId": group},
        "setPresence": {"state": "online"},
        "getPresence": {"userIds": [bob]},
        "muteChat": {"chatId": group, "duration": "8h"},
        "createAttachment": {
            "body": base64.b64encode(PDF).decode(),
            "hash": hashlib.sha256(PDF).hexdigest(),
            "mimeType": "application/pdf",
            "fileName": "a.pdf",
        },
        "react": {"chatId": group, "messageId": new_id(), "emoji": "👍"},
        "editMessage": {"chatId": group, "messageId": new_id(), "text": "new text"},
        "deleteMessage": {"chatId": group, "messageId": new_id()},
        "setDisappearing": {"chatId": group, "seconds": 86400},
    }


# A field the server ignores may hold anything: it is neither stored nor sent.
IGNORED = {("createAttachment", "data.mimeType")}


def refusal(abuse: str, type_: str, field: str) -> tuple[int | None, str]:
    """The (id, code) of the error answer to a frame with ``field`` abused."""
    if abuse != "nul":
        # Deep nesting, a 5,001-digit integer and a lone surrogate escape are not
        # JSON the server reads: no id can be read either.
        return None, "malformed_frame"
    if field == "type":
        return 7, "unknown_command"
    if (type_, field) == ("createAttachment", "data.body"):
        return 7, "invalid_body"  # not base64; the schema takes any text there
    return 7, "invalid_frame"  # text fields refuse NUL, ids must match their pattern


@pytest.mark.parametrize("abuse", list(ABUSES))
async def test_hostile_fields_in_frames_get_an_error_frame(
    abuse: str, user: Register, server: LiveServer, connect: Connect
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    a = await online(connect, alice)
    group = (await a.call("createChat", {"participants": [bob["user_id"]], "name": "G"}))["chatId"]
    templates = ws_templates(group, bob["user_id"], carol["user_id"])
    assert set(templates) == set(COMMANDS) - {"auth"}

    tried = 0
    for type_, data in templates.items():
        frame = {"id": 7, "type": type_, "data": data}
        for field, raw in mutations(frame, abuse):
            await a.socket.send(raw)
            answer = await a.next_answer(timeout=10)
            tried += 1
            if (type_, field) in IGNORED and answer.get("ok"):
                continue
            assert answer["ok"] is False, (type_, field, answer)
            expected = refusal(abuse, type_, field)
            assert (answer["id"], answer["error"]["code"]) == expected, (type_, field, answer)
            assert answer["error"]["message"]
        assert await a.call("ping") == {"pong": True}, type_
    assert a.close_code is None
    assert tried >= 25

    # None of it created or renamed anything.
    assert [c["chatId"] for c in (await a.call("getChats"))["chats"]] == [group]
    assert (await a.call("getChat", {"chatId": group}))["name"] == "G"
    await assert_still_serving(server, connect, alice, bob)


CLOSING_FRAMES = [
    pytest.param(
        json.dumps(
            {
                "id": 1,
                "type": "sendMessage",
                "data": {"chatId": new_id(), "clientMessageId": "c", "message": "x" * (2 * MIB)},
            }
        ),
        None,
        1009,
        id="2-mib-message",
    ),
    pytest.param("[" * (256 * 1024 + 1), None, 1009, id="just-over-256-kib"),
    pytest.param(b'{"id": 1, "type": "ping"}', None, 1003, id="binary"),
    pytest.param(
        b'{"id": 1, "type": "ping", "x": "\xed\xa0\x80"}', True, 1007, id="utf8-surrogate"
    ),
]


@pytest.mark.parametrize(("frame", "text", "close_code"), CLOSING_FRAMES)
async def test_oversized_and_undecodable_frames_close_with_the_documented_code(
    frame: str | bytes,
    text: bool | None,
    close_code: int,
    user: Register,
    server: LiveServer,
    connect: Connect,
) -> None:
    alice, bob = await user(), await user()
    ws = await online(connect, alice)
    await ws.socket.send(frame, text=text)
    assert await ws.closed(timeout=10) == close_code
    await assert_still_serving(server, connect, alice, bob)


@pytest.mark.parametrize("abuse", list(ABUSES))
async def test_hostile_first_frames_close_1008_before_authentication(
    abuse: str, user: Register, server: LiveServer, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    auth = {"id": 1, "type": "auth", "data": {"token": alice["access_token"]}}
    for field, raw in mutations(auth, abuse):
        ws = await WsClient.open(server.ws_url)
        await ws.socket.send(raw)
        assert await ws.closed(timeout=10) == 1008
        # A valid auth frame whose token is wrong, or no valid auth frame at all.
        token_only = (abuse, field) == ("nul", "data.token")
        assert ws.close_reason == ("invalid_token" if token_only else "auth_required"), field
        assert ws.unread() == []
    await assert_still_serving(server, connect, alice, bob)


# -- storable but unusual text -------------------------------------------------------------

TRICKY = "Ada\r\nLovelace \u202egnp.exe\u202c\n\tend"


async def test_crlf_and_bidi_overrides_are_stored_and_sent_back_exactly(
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    container: Container,
) -> None:
    alice, bob = await user(), await user(device=TRICKY)
    profile = {"name": TRICKY, "about": TRICKY, "location": TRICKY}
    response = await client.patch("/v1/me", json=profile, headers=bearer(alice))
    assert response.status_code == 200, response.text
    me = (await client.get("/v1/me", headers=bearer(alice))).json()
    assert {k: me[k] for k in profile} == profile
    public = (await client.get(f"/v1/users/{alice['user_id']}", headers=bearer(bob))).json()
    assert (public["name"], public["about"]) == (TRICKY, TRICKY)
    listed = (await client.get("/v1/devices", headers=bearer(bob))).json()["devices"]
    assert [d["name"] for d in listed] == [TRICKY]

    a, b = await online(connect, alice), await online(connect, bob)
    created = await a.call("createChat", {"participants": [bob["user_id"]], "name": TRICKY})
    group = created["chatId"]
    assert (await b.next_event("message"))["data"]["system"]["name"] == TRICKY
    await a.call("updateChat", {"chatId": group, "name": TRICKY + "!"})
    assert (await b.next_event("message"))["data"]["system"]["name"] == TRICKY + "!"
    assert (await b.call("getChat", {"chatId": group}))["name"] == TRICKY + "!"
    # The client message id is kept exactly: CRLF and LF are two different ids.
    first = await a.call(
        "sendMessage", {"chatId": group, "clientMessageId": "id\r\n\u202e", "message": TRICKY}
    )
    again = await a.call(
        "sendMessage", {"chatId": group, "clientMessageId": "id\r\n\u202e", "message": TRICKY}
    )
    other = await a.call(
        "sendMessage", {"chatId": group, "clientMessageId": "id\n\u202e", "message": TRICKY}
    )
    assert again["messageId"] == first["messageId"]
    assert again["duplicate"] is True
    assert other["messageId"] != first["messageId"]
    for _ in range(2):
        assert (await b.next_event("message"))["data"]["message"] == TRICKY

    async with container.engine.connect() as conn:
        stored = (await conn.execute(sa.select(users.c.name, users.c.about))).all()
        assert (TRICKY, TRICKY) in [tuple(r) for r in stored]
        assert await conn.scalar(sa.select(chats.c.name).where(chats.c.id == group)) == TRICKY + "!"
        assert TRICKY in (await conn.execute(sa.select(devices.c.name))).scalars().all()


async def test_a_file_name_cannot_inject_headers(client: httpx.AsyncClient, user: Register) -> None:
    alice = await user()
    name = "evil\r\nSet-Cookie: session=stolen\r\n\u202efdp.exe"
    response = await client.post(
        "/v1/attachments",
        content=PDF,
        headers={
            **bearer(alice),
            "X-Content-SHA256": hashlib.sha256(PDF).hexdigest(),
            "X-File-Name": quote(name),
        },
    )
    assert response.status_code == 201, response.text
    stored = response.json()["fileName"]
    assert not set(stored) & {"\r", "\n", "\u202e"}
    assert stored == "evilSet-Cookie: session=stolenfdp.exe"
    download = await client.get(
        f"/v1/attachments/{response.json()['attachmentId']}", headers=bearer(alice)
    )
    assert download.status_code == 200
    assert download.content == PDF
    assert "set-cookie" not in download.headers
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment; filename*=UTF-8''")
    assert disposition.isascii()
    assert " " not in disposition.split("''", 1)[1]
