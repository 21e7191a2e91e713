"""Connecting to the gateway: authentication, replaced and revoked devices, abusive frames.

Every abuse ends the same way: the server answers or closes as documented, a
bystander's socket keeps working, a fresh connection works and /health is 200.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from pigeon.config import Settings
from tests.gateway.conftest import Connect, Register
from tests.live import LiveServer, WsClient
from tests.support import FakeClock, bearer, before_message, online


async def assert_still_serving(
    server: LiveServer, connect: Connect, session: dict[str, Any], bystander: WsClient
) -> None:
    """The server survived: /health, a fresh connection and an old one all work."""
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        response = await http.get("/health")
    assert response.status_code == 200, response.text
    fresh = await online(connect, session)
    assert await fresh.call("ping") == {"pong": True}
    assert await bystander.call("ping") == {"pong": True}
    await fresh.close()


async def open_unauthenticated(server: LiveServer) -> WsClient:
    return await WsClient.open(server.ws_url)


# -- authenticating ------------------------------------------------------------


async def test_header_token_authenticates_the_device(user: Register, connect: Connect) -> None:
    alice = await user()
    ws = await connect(alice)  # the fixture checks ``ready`` names this device
    assert await ws.call("ping") == {"pong": True}
    assert await ws.call("getChats") == {"chats": []}


async def test_first_frame_token_gets_an_answer_then_ready(
    user: Register, server: LiveServer
) -> None:
    alice = await user()
    async with await open_unauthenticated(server) as ws:
        answer = await ws.request("auth", {"token": alice["access_token"]})
        assert answer == {
            "id": answer["id"],
            "ok": True,
            "data": {"userId": alice["user_id"], "deviceId": alice["device_id"]},
        }
        ready = await ws.next_event("ready")
        assert ready["data"] == {"userId": alice["user_id"], "deviceId": alice["device_id"]}
        assert await ws.call("ping") == {"pong": True}
        # Authenticating twice is refused, and the connection stays.
        again = await ws.request("auth", {"token": alice["access_token"]})
        assert again["ok"] is False
        assert again["error"]["code"] == "invalid_state"
        assert await ws.call("ping") == {"pong": True}


async def test_first_frame_that_is_not_auth_closes_1008(
    user: Register, server: LiveServer, connect: Connect
) -> None:
    alice = await user()
    ws = await open_unauthenticated(server)
    await ws.send({"id": 1, "type": "getChats"})
    assert await ws.closed() == 1008
    assert ws.close_reason == "auth_required"
    bystander = await online(connect, await user())
    await assert_still_serving(server, connect, alice, bystander)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b'{"id": 1, "type": "auth"}', 1003, id="binary"),
        pytest.param(b'{"id": 1, "x": "\xff"}', 1007, id="invalid-utf8"),
        pytest.param("{", 1008, id="invalid-json"),
        pytest.param("[" * 10_000, 1008, id="deep"),
        pytest.param("x" * (256 * 1024 + 1), 1009, id="too-big"),
    ],
)
async def test_abusive_first_frame_is_closed_with_a_code(
    user: Register, server: LiveServer, connect: Connect, frame: str | bytes, code: int
) -> None:
    alice, bob = await user(), await user()
    bystander = await online(connect, bob)
    ws = await open_unauthenticated(server)
    await ws.socket.send(frame, text=True if code == 1007 else None)
    assert await ws.closed() == code
    assert ws.unread() == []
    await assert_still_serving(server, connect, alice, bystander)


class TestAuthTimeout:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"ws_auth_timeout_seconds": 0.5})

    async def test_no_auth_frame_in_time_closes_1008(
        self, user: Register, server: LiveServer, connect: Connect
    ) -> None:
        alice = await user()
        loop = asyncio.get_running_loop()
        started = loop.time()
        ws = await open_unauthenticated(server)
        assert await ws.closed(timeout=5) == 1008
        assert ws.close_reason == "auth_timeout"
        assert 0.4 <= loop.time() - started < 4
        bystander = await online(connect, await user())
        await assert_still_serving(server, connect, alice, bystander)

    async def test_a_prompt_auth_frame_is_accepted(
        self, user: Register, server: LiveServer
    ) -> None:
        alice = await user()
        async with await open_unauthenticated(server) as ws:
            await ws.call("auth", {"token": alice["access_token"]})
            await ws.next_event("ready")
            # Time passing is the point: past the auth timeout, the socket is still open.
            await asyncio.sleep(0.8)
            assert await ws.call("ping") == {"pong": True}


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-real-token", "Basic YWxpY2U6c2VjcmV0", "Bearer"],
    ids=["unknown-token", "wrong-scheme", "no-token"],
)
async def test_bad_header_token_closes_1008(
    user: Register, server: LiveServer, connect: Connect, header: str
) -> None:
    alice = await user()
    socket = await ws_connect(server.ws_url, additional_headers={"Authorization": header})
    ws = WsClient(socket)
    assert await ws.closed() == 1008
    assert ws.close_reason == "invalid_token"
    assert ws.unread() == []  # no ``ready``
    bystander = await online(connect, await user())
    await assert_still_serving(server, connect, alice, bystander)


async def test_bad_first_frame_token_closes_1008(user: Register, server: LiveServer) -> None:
    ws = await open_unauthenticated(server)
    await ws.send({"id": 1, "type": "auth", "data": {"token": "forged"}})
    assert await ws.closed() == 1008
    assert ws.close_reason == "invalid_token"
    assert ws.unread() == []


async def test_revoked_devices_token_closes_1008(
    user: Register, server: LiveServer, client: httpx.AsyncClient
) -> None:
    phone = await user("+14155550100", "phone")
    laptop = await user("+14155550100", "laptop")
    response = await client.delete(f"/v1/devices/{laptop['device_id']}", headers=bearer(phone))
    assert response.status_code == 204
    for first_frame in (False, True):
        if first_frame:
            ws = await open_unauthenticated(server)
            await ws.send({"id": 1, "type": "auth", "data": {"token": laptop["access_token"]}})
        else:
            ws = await WsClient.open(server.ws_url, laptop["access_token"])
        assert await ws.closed() == 1008
        assert ws.close_reason == "invalid_token"
        assert ws.unread() == []


async def test_expired_token_closes_1008(
    user: Register, server: LiveServer, connect: Connect, clock: FakeClock, settings: Settings
) -> None:
    alice = await user()
    ws = await connect(alice)  # valid now
    await ws.close()
    clock.advance(seconds=settings.access_token_ttl_seconds + 1)
    expired = await WsClient.open(server.ws_url, alice["access_token"])
    assert await expired.closed() == 1008
    assert expired.close_reason == "invalid_token"
    assert expired.unread() == []


@pytest.mark.parametrize("param", ["token", "access_token"])
async def test_token_in_url_is_refused_before_upgrade(
    user: Register, server: LiveServer, connect: Connect, param: str
) -> None:
    alice = await user()
    url = f"{server.ws_url}?{param}={alice['access_token']}"
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(url)
    assert refused.value.response.status_code == 403
    # Refused even with a valid header beside it: the URL already leaked the token.
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(url, additional_headers=bearer(alice))
    assert refused.value.response.status_code == 403
    bystander = await online(connect, await user())
    await assert_still_serving(server, connect, alice, bystander)


# -- replaced and revoked devices ------------------------------------------------


async def test_second_connection_of_a_device_replaces_the_first(
    user: Register, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    first = await online(connect, alice)
    b = await online(connect, bob)
    second = await online(connect, alice)
    assert await first.closed() == 4409
    assert first.close_reason == "replaced by a newer connection"
    # The new connection is the device now: messages reach it.
    chat = await b.call("createChat", {"participants": [alice["user_id"]]})
    await b.call(
        "sendMessage",
        {"chatId": chat["chatId"], "clientMessageId": "m1", "message": "still there?"},
    )
    event = await second.next_event("message")
    assert event["data"]["message"] == "still there?"
    assert await second.call("ping") == {"pong": True}


async def test_revoking_a_device_closes_its_live_socket(
    user: Register, connect: Connect, client: httpx.AsyncClient
) -> None:
    phone = await user("+14155550101", "phone")
    laptop = await user("+14155550101", "laptop")
    on_phone = await online(connect, phone)
    on_laptop = await online(connect, laptop)
    response = await client.delete(f"/v1/devices/{laptop['device_id']}", headers=bearer(phone))
    assert response.status_code == 204
    assert await on_laptop.closed(timeout=1.5) == 1008
    assert on_laptop.close_reason == "device_revoked"
    assert await on_phone.call("ping") == {"pong": True}


# -- malformed frames: an error answer, and the connection goes on ---------------

DEEP = "[" * 10_000 + "]" * 10_000

BAD_FRAMES = [
    pytest.param('{"id": 1, "type": "ping"', "malformed_frame", None, id="invalid-json"),
    pytest.param("", "malformed_frame", None, id="empty"),
    pytest.param(
        '{"id": "req-7", "type": "launchRockets", "data": {}}',
        "unknown_command",
        "req-7",
        id="unknown-command",
    ),
    pytest.param('{"id": 8, "data": {}}', "unknown_command", 8, id="no-type"),
    pytest.param(
        '{"id": 2, "type": "createChat", "data": {"participants": "bob"}}',
        "invalid_frame",
        2,
        id="wrong-type",
    ),
    pytest.param(
        '{"id": 3, "type": "getChat", "data": {"chatId": 42}}',
        "invalid_frame",
        3,
        id="number-for-string",
    ),
    pytest.param(
        '{"id": 4, "type": "ping", "data": {}, "sudo": true}',
        "invalid_frame",
        4,
        id="unknown-top-field",
    ),
    pytest.param(
        '{"id": 5, "type": "getChats", "data": {"all": true}}',
        "invalid_frame",
        5,
        id="unknown-data-field",
    ),
    pytest.param(
        '{"id": 6, "type": "ack", "data": {"upTo": -1}}', "invalid_frame", 6, id="negative-ack"
    ),
    pytest.param("[1, 2, 3]", "invalid_frame", None, id="not-an-object"),
    pytest.param(
        '{"id": 9, "type": "ping", "data": ' + DEEP + "}", "malformed_frame", None, id="deep"
    ),
    pytest.param(DEEP, "malformed_frame", None, id="deep-bare"),
    pytest.param(
        '{"id": 10, "type": "ack", "data": {"upTo": 18446744073709551616}}',
        "invalid_frame",
        10,
        id="ack-beyond-2**64",
    ),
    pytest.param(
        '{"id": 11, "type": "ack", "data": {"upTo": ' + "9" * 5000 + "}}",
        "malformed_frame",
        None,
        id="5000-digit-integer",
    ),
    pytest.param(
        '{"id": 18446744073709551616, "type": "ping"}', "invalid_frame", None, id="huge-id"
    ),
    pytest.param('{"id": "' + "x" * 65 + '", "type": "ping"}', "invalid_frame", None, id="long-id"),
]


@pytest.mark.parametrize(("raw", "code", "request_id"), BAD_FRAMES)
async def test_bad_frame_gets_an_error_answer_and_the_connection_goes_on(
    user: Register,
    server: LiveServer,
    connect: Connect,
    raw: str,
    code: str,
    request_id: Any,
) -> None:
    alice = await user()
    ws = await online(connect, alice)
    await ws.socket.send(raw)
    answer = await ws.next_answer()
    assert answer["id"] == request_id
    assert answer["ok"] is False
    assert answer["error"]["code"] == code, answer
    assert answer["error"]["message"]
    assert await ws.call("ping") == {"pong": True}
    assert ws.close_code is None
    bystander = await online(connect, await user())
    await assert_still_serving(server, connect, await user(), bystander)


@pytest.mark.parametrize(
    ("escaped_text", "code"),
    [
        # The JSON parser refuses a lone surrogate escape: the frame is not JSON it reads.
        pytest.param(r"\ud800", "malformed_frame", id="lone-high-surrogate"),
        pytest.param(r"before \ud800 after", "malformed_frame", id="surrounded-surrogate"),
        pytest.param(r"\udfff", "malformed_frame", id="lone-low-surrogate"),
        # NUL is valid JSON; text fields refuse it (docs/protocol.md, Frames).
        pytest.param(r"a\u0000b", "invalid_frame", id="nul"),
        pytest.param(r"\u0000", "invalid_frame", id="only-nul"),
    ],
)
async def test_unstorable_text_is_refused_and_nothing_is_delivered(
    user: Register, connect: Connect, escaped_text: str, code: str
) -> None:
    alice, bob = await user(), await user()
    a = await online(connect, alice)
    b = await online(connect, bob)
    chat = await a.call("createChat", {"participants": [bob["user_id"]]})
    data = f'{{"chatId": "{chat["chatId"]}", "clientMessageId": "m1", "message": "{escaped_text}"}}'
    raw = '{"id": 1, "type": "sendMessage", "data": ' + data + "}"
    await a.socket.send(raw)
    answer = await a.next_answer()
    assert answer["ok"] is False
    assert answer["error"]["code"] == code, answer
    assert answer["id"] == (1 if code == "invalid_frame" else None)
    # Nothing was stored: the next message is the chat's first, and it is the first
    # message Bob gets (committed after the refusal, so it would come after a stored one).
    sent = await a.call(
        "sendMessage", {"chatId": chat["chatId"], "clientMessageId": "m2", "message": "ok"}
    )
    assert sent["seq"] == 1
    assert sent["duplicate"] is False
    before = await before_message(b, sent["messageId"])
    assert [f for f in before if f["event"] == "message"] == []


# -- frames the server closes the connection for ---------------------------------


async def test_frame_over_256_kib_closes_1009(
    user: Register, server: LiveServer, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    bystander = await online(connect, bob)
    ws = await online(connect, alice)
    text = "x" * (256 * 1024 + 1)
    await ws.send({"id": 1, "type": "ping", "data": {}, "pad": text})
    assert await ws.closed() == 1009
    await assert_still_serving(server, connect, alice, bystander)


async def test_frame_just_under_the_limit_is_answered(user: Register, connect: Connect) -> None:
    alice = await user()
    ws = await online(connect, alice)
    frame = json.dumps({"id": 1, "type": "ping", "data": {}, "pad": ""})
    await ws.socket.send(frame.replace('""', '"' + "x" * (256 * 1024 - len(frame)) + '"'))
    answer = await ws.next_answer()
    assert answer["error"]["code"] == "invalid_frame"  # ``pad`` is unknown, but it was read
    assert await ws.call("ping") == {"pong": True}


async def test_invalid_utf8_in_a_text_frame_closes_1007(
    user: Register, server: LiveServer, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    bystander = await online(connect, bob)
    ws = await online(connect, alice)
    await ws.socket.send(b'{"id": 1, "type": "ping", "x": "\xff\xfe"}', text=True)
    assert await ws.closed() == 1007
    await assert_still_serving(server, connect, alice, bystander)


async def test_binary_frame_closes_1003(
    user: Register, server: LiveServer, connect: Connect
) -> None:
    alice, bob = await user(), await user()
    bystander = await online(connect, bob)
    ws = await online(connect, alice)
    await ws.socket.send(b'{"id": 1, "type": "ping"}')
    assert await ws.closed() == 1003
    await assert_still_serving(server, connect, alice, bystander)
