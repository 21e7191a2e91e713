"""Handshakes at once are bounded (PIGEON_WS_MAX_CONCURRENT_HANDSHAKES), and the bound never jams.

With room for a single handshake, a crowd of devices still all connect and
get their queues, a refused or silent socket gives its place back, and a
device that is already connected is answered throughout. (How much this
helps under a storm of 10,000 is measured by ``bench/storm.py``.)
"""

from __future__ import annotations

import asyncio

import pytest

from pigeon.config import Settings
from tests.gateway.conftest import Connect, Register
from tests.live import LiveServer, WsClient
from tests.support import online


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A silent socket would hold the only place for 30 s if it took one.
    return settings.model_copy(
        update={"ws_max_concurrent_handshakes": 1, "ws_auth_timeout_seconds": 30}
    )


async def test_a_crowd_connecting_at_once_all_get_their_queues(
    user: Register, connect: Connect
) -> None:
    alice = await user()
    sender = await online(connect, alice)
    crowd = [await user() for _ in range(6)]
    sent = {}
    for member in crowd:
        chat = await sender.call("createChat", {"participants": [member["user_id"]]})
        answer = await sender.call(
            "sendMessage",
            {"chatId": chat["chatId"], "clientMessageId": member["user_id"], "message": "hi"},
        )
        sent[member["device_id"]] = answer["messageId"]

    async def arrive(session: dict[str, str]) -> list[str]:
        ws = await connect(session)
        frames = await ws.until(lambda frame: frame.get("event") == "drained")
        return [f["data"]["messageId"] for f in frames if f.get("event") == "message"]

    received = await asyncio.wait_for(asyncio.gather(*(arrive(m) for m in crowd)), 20)
    for member, messages in zip(crowd, received, strict=True):
        assert sent[member["device_id"]] in messages
    assert await sender.call("ping") == {"pong": True}


async def test_a_socket_that_has_not_authenticated_holds_no_place(
    user: Register, server: LiveServer, connect: Connect
) -> None:
    alice = await user()
    silent = await WsClient.open(server.ws_url)  # no header, no auth frame yet
    ws = await online(connect, alice)  # would wait the 30 s auth timeout
    assert await ws.call("getChats") == {"chats": []}
    # The silent one is still served when it does authenticate.
    await silent.call("auth", {"token": (await user())["access_token"]})
    await silent.next_event("drained")
    await silent.close()


async def test_refused_handshakes_give_their_place_back(
    user: Register, server: LiveServer, connect: Connect
) -> None:
    alice = await user()
    for _ in range(3):
        refused = await WsClient.open(server.ws_url, "not-a-real-token")
        assert await refused.closed() == 1008
        left = await WsClient.open(server.ws_url, alice["access_token"])
        await left.close()  # gone before its queue was read
    ws = await online(connect, alice)
    assert await ws.call("ping") == {"pong": True}
