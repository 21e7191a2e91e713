"""Disappearing messages over live sockets, on both engines, with a moved clock.

A chat's timer is set by any member of a 1:1 chat or an admin of a group and
announced by a system message; messages sent while it is on carry their
expiry, and the purge deletes every copy the server holds (queue entries,
the message, its send record, changes queued about it, its files) once it
has passed. The tables and the blob directory are read directly.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.config import Settings
from pigeon.storage.schema import attachments, blobs, inbox, messages, sent_messages
from tests.gateway.conftest import Connect, Register
from tests.gateway.test_message_changes import backlog, direct, person, refused, send
from tests.gateway.test_retention import refreshed
from tests.live import WsClient
from tests.support import FakeClock, online

DAY = 86_400


async def system_message(ws: WsClient, chat_id: str) -> dict[str, Any]:
    """The next "disappearing" system message of ``chat_id`` on ``ws``."""
    while True:
        event = await ws.next_event("message", 10)
        data = event["data"]
        if data["chatId"] == chat_id and (data.get("system") or {}).get("action") == "disappearing":
            system: dict[str, Any] = event["data"]["system"]
            return system


async def received(ws: WsClient, message_id: str) -> dict[str, Any]:
    while True:
        event = await ws.next_event("message", 10)
        if event["data"]["messageId"] == message_id:
            data: dict[str, Any] = event["data"]
            return data


def parsed(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


async def held(
    container: Container, message_id: str, device_id: str | None = None
) -> dict[str, int]:
    """What the server still holds of one message, table by table (queues: of ``device_id``
    only, if given: online devices ack as they please)."""
    queues = inbox.c.device_id == device_id if device_id else sa.true()
    async with container.engine.connect() as conn:

        async def count(query: Any) -> int:
            return int((await conn.execute(query)).scalar_one())

        change_events = sa.func.count().filter(sa.cast(inbox.c.event, sa.Text).contains(message_id))
        return {
            "messages": await count(sa.select(sa.func.count()).where(messages.c.id == message_id)),
            "queued": await count(
                sa.select(sa.func.count()).where(inbox.c.message_id == message_id, queues)
            ),
            "changes": await count(sa.select(change_events).select_from(inbox).where(queues)),
            "send_records": await count(
                sa.select(sa.func.count()).where(sent_messages.c.message_id == message_id)
            ),
            "attachments": await count(sa.select(sa.func.count()).select_from(attachments)),
            "blobs": await count(sa.select(sa.func.count()).select_from(blobs)),
        }


def blob_files(settings: Settings) -> list[Path]:
    return [p for p in (settings.data_dir / "blobs").rglob("*") if p.is_file()]


async def test_nothing_outlives_its_timer_on_the_server(
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    container: Container,
    clock: FakeClock,
    settings: Settings,
) -> None:
    alice, [bob] = await person(user, 2), await person(user)
    a, b = await online(connect, alice[0]), await online(connect, bob)
    chat_id = await direct(a, bob)
    before = await send(a, chat_id, "said before")
    assert "expiresAt" not in await received(b, before["messageId"])

    # Any member of a 1:1 chat sets the timer; both sides are told.
    assert await b.call("setDisappearing", {"chatId": chat_id, "seconds": DAY}) == {
        "status": "SUCCESS"
    }
    for ws in (a, b):
        assert await system_message(ws, chat_id) == {
            "action": "disappearing",
            "actorId": bob["user_id"],
            "seconds": DAY,
        }
    assert (await a.call("getChat", {"chatId": chat_id}))["disappearingSeconds"] == DAY

    body = b"boarding pass"
    attachment = await a.call(
        "createAttachment",
        {
            "body": base64.b64encode(body).decode(),
            "hash": hashlib.sha256(body).hexdigest(),
            "fileName": "pass.txt",
        },
    )
    sent = await send(a, chat_id, "gate 12", attachments=[attachment["attachmentId"]])
    got = await received(b, sent["messageId"])
    assert parsed(got["expiresAt"]) - parsed(got["createdAt"]) == timedelta(days=1)
    ref = {"chatId": chat_id, "messageId": sent["messageId"]}
    await b.call("react", {**ref, "emoji": "✈️"})
    # Alice's second device is offline: the message and the reaction wait in its queue.
    offline = alice[1]["device_id"]
    before_expiry = await held(container, sent["messageId"], offline)
    assert before_expiry == {
        "messages": 1,
        "queued": 1,
        "changes": 1,
        "send_records": 1,
        "attachments": 1,
        "blobs": 1,
    }

    clock.advance(hours=23, minutes=59)
    await container.messaging.purge_expired()
    await container.media.purge()
    assert await held(container, sent["messageId"], offline) == before_expiry

    clock.advance(minutes=1)
    await container.messaging.purge_expired()
    await container.media.purge()
    assert await held(container, sent["messageId"]) == dict.fromkeys(before_expiry, 0)
    assert blob_files(settings) == []
    # Nor can it be changed any more.
    gone = await refused(b, "react", {**ref, "emoji": "👍"})
    assert gone["code"] == "message_not_found"

    # Alice's second device comes back: what said before stayed, the rest is gone.
    later = await backlog(connect, await refreshed(client, alice[1]))  # a day passed
    ids = [d["messageId"] for _, d in later]
    assert before["messageId"] in ids
    assert sent["messageId"] not in ids

    # Off again: new messages carry no expiry.
    await a.call("setDisappearing", {"chatId": chat_id, "seconds": 0})
    after = await send(a, chat_id, "normal again")
    assert "expiresAt" not in await received(b, after["messageId"])
    assert "disappearingSeconds" not in await a.call("getChat", {"chatId": chat_id})


async def test_only_group_admins_set_the_timer_and_only_to_the_offered_values(
    user: Register, connect: Connect
) -> None:
    [alice], [bob], [eve], [mallory] = [await person(user) for _ in range(4)]
    a, b, e, m = [await online(connect, s) for s in (alice, bob, eve, mallory)]
    group = (await a.call("createChat", {"participants": [bob["user_id"], eve["user_id"]]}))[
        "chatId"
    ]
    await a.call(
        "modifyChatParticipants",
        {"chatId": group, "userId": eve["user_id"], "operation": "REMOVE"},
    )
    week = {"chatId": group, "seconds": 7 * DAY}
    assert (await refused(b, "setDisappearing", week))["code"] == "not_admin"
    unknown = await refused(
        m, "setDisappearing", {"chatId": "01JQ80NOSUCHCHAT0000000000", "seconds": DAY}
    )
    assert unknown["code"] == "chat_not_found"
    assert await refused(m, "setDisappearing", week) == unknown
    assert await refused(e, "setDisappearing", week) == unknown
    for bad in (1, 3600, 2 * DAY):
        error = await refused(a, "setDisappearing", {"chatId": group, "seconds": bad})
        assert error["code"] == "invalid_disappearing_timer"
    assert "disappearingSeconds" not in await b.call("getChat", {"chatId": group})

    await a.call("setDisappearing", {"chatId": group, "seconds": 90 * DAY})
    assert (await system_message(b, group))["seconds"] == 90 * DAY
    sent = await send(b, group, "see you in spring")
    got = await received(a, sent["messageId"])
    assert parsed(got["expiresAt"]) - parsed(got["createdAt"]) == timedelta(days=90)
