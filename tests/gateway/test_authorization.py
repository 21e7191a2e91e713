"""Outsiders learn nothing and change nothing: a chat you are not in looks like no chat.

For every chat command, a non-member (and a member who was removed) gets the
very answer a random, nonexistent chat id gets; the database does not change
and nothing reaches the outsider's socket, while the members go on chatting.
Typing and presence reach only people who share a chat.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from pigeon.bootstrap import Container
from pigeon.domain.ids import new_id
from pigeon.storage.schema import chat_members, chats, inbox, messages, sent_messages
from tests.gateway.conftest import Connect, Register
from tests.live import WsClient
from tests.support import of_kind, online, settle, settle_in_new_group


async def next_frames(ws: WsClient, count: int) -> list[dict[str, Any]]:
    """The next ``count`` frames on ``ws``, in order, passing over only presence events."""
    frames: list[dict[str, Any]] = []
    while len(frames) < count:
        frame = await ws.next_event()
        if frame.get("event") != "presence":
            frames.append(frame)
    return frames


_client_ids = itertools.count(1)

# Every command that names a chat, as (label, type, data for a chat id and the outsider).
ChatCommand = tuple[str, str, Callable[[str, str], dict[str, Any]]]
CHAT_COMMANDS: list[ChatCommand] = [
    (
        "sendMessage",
        "sendMessage",
        lambda chat, _: {
            "chatId": chat,
            "clientMessageId": f"sneak-{next(_client_ids)}",
            "message": "let me in",
        },
    ),
    ("markRead", "markRead", lambda chat, _: {"chatId": chat, "upToSeq": 1_000}),
    ("getChat", "getChat", lambda chat, _: {"chatId": chat}),
    ("typing", "typing", lambda chat, _: {"chatId": chat, "state": "composing"}),
    (
        "add-self",
        "modifyChatParticipants",
        lambda chat, me: {"chatId": chat, "userId": me, "operation": "ADD"},
    ),
    (
        "remove-self",
        "modifyChatParticipants",
        lambda chat, me: {"chatId": chat, "userId": me, "operation": "REMOVE"},
    ),
    (
        "promote-self",
        "setRole",
        lambda chat, me: {"chatId": chat, "userId": me, "role": "admin"},
    ),
    ("rename", "updateChat", lambda chat, _: {"chatId": chat, "name": "owned"}),
]


@dataclass
class Snapshot:
    """What an outsider's commands could change in the database."""

    chats: list[tuple[Any, ...]]
    members: list[tuple[Any, ...]]
    messages: int
    inbox: int
    sent: int


async def snapshot(engine: AsyncEngine) -> Snapshot:
    async with engine.connect() as conn:

        async def rows(query: sa.Select[Any]) -> list[tuple[Any, ...]]:
            return sorted(tuple(row) for row in await conn.execute(query))

        async def count(table: sa.Table) -> int:
            query = sa.select(sa.func.count()).select_from(table)
            return int((await conn.execute(query)).scalar_one())

        return Snapshot(
            chats=await rows(sa.select(chats.c.id, chats.c.kind, chats.c.name, chats.c.last_seq)),
            members=await rows(
                sa.select(
                    chat_members.c.chat_id,
                    chat_members.c.user_id,
                    chat_members.c.role,
                    chat_members.c.read_seq,
                )
            ),
            messages=await count(messages),
            inbox=await count(inbox),
            sent=await count(sent_messages),
        )


def without_id(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "id"}


async def assert_like_no_chat(
    outsider: WsClient,
    outsider_id: str,
    chat_id: str,
    talk: Callable[[int], Any],
) -> int:
    """Each chat command on ``chat_id`` answers exactly as on a random id; members talk
    between the attempts. Returns how many messages the members sent."""
    sent = 0
    for label, type_, data in CHAT_COMMANDS:
        nowhere = await outsider.request(type_, data(new_id(), outsider_id))
        assert nowhere["ok"] is False
        assert nowhere["error"]["code"] == "chat_not_found", (label, nowhere)
        answer = await outsider.request(type_, data(chat_id, outsider_id))
        assert without_id(answer) == without_id(nowhere), label
        await talk(sent)
        sent += 1
    return sent


@pytest.mark.parametrize("kind", ["group", "direct"])
async def test_a_non_member_gets_the_nonexistent_chat_answer_and_changes_nothing(
    user: Register, connect: Connect, container: Container, kind: str
) -> None:
    alice, bob, mallory = await user(), await user(), await user()
    # No acks from the members, so nothing in the database moves but what is done here.
    a = await online(connect, alice, auto_ack=False)
    b = await online(connect, bob, auto_ack=False)
    m = await online(connect, mallory)
    request: dict[str, Any] = {"participants": [bob["user_id"]]}
    if kind == "group":
        request["name"] = "Private"
    chat_id = (await a.call("createChat", request))["chatId"]
    if kind == "group":
        for ws in (a, b):
            await ws.next_event("message")
    before = await snapshot(container.engine)

    async def talk(n: int) -> None:
        sender, receiver = (a, b) if n % 2 == 0 else (b, a)
        await sender.call(
            "sendMessage", {"chatId": chat_id, "clientMessageId": f"m{n}", "message": f"#{n}"}
        )
        # Exactly the message: no typing or anything else from Mallory in between.
        [event] = await next_frames(receiver, 1)
        assert event["event"] == "message"
        assert event["data"]["message"] == f"#{n}"

    talked = await assert_like_no_chat(m, mallory["user_id"], chat_id, talk)

    after = await snapshot(container.engine)
    assert after.members == before.members
    assert [c[:3] for c in after.chats] == [c[:3] for c in before.chats]
    last_seq = {c[0]: c[3] for c in before.chats}
    last_seq[chat_id] += talked
    assert {c[0]: c[3] for c in after.chats} == last_seq
    assert after.messages == before.messages + talked
    assert after.inbox == before.inbox + talked
    assert after.sent == before.sent + talked
    assert await m.call("getChats") == {"chats": []}
    # Nothing reached Mallory; no typing, no system message, nothing of hers reached
    # the members (each up to a barrier, see tests.support).
    for ws, other in ((a, b), (b, a)):
        frames = await settle(ws, other, chat_id)
        assert [f for f in frames if f["event"] != "presence"] == []
    assert await settle_in_new_group(m, mallory["user_id"], a) == []


async def test_a_removed_member_is_an_outsider(
    user: Register, connect: Connect, container: Container
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    # No acks, so nothing in the database moves but what is done here.
    a = await online(connect, alice, auto_ack=False)
    b = await online(connect, bob, auto_ack=False)
    c = await online(connect, carol, auto_ack=False)
    chat_id = (
        await a.call(
            "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "Team"}
        )
    )["chatId"]
    for ws in (a, b, c):
        await ws.next_event("message")
    # Carol was in: she heard typing (this also fills the membership cache).
    await a.call("typing", {"chatId": chat_id, "state": "composing"})
    assert (await c.next_event("typing"))["data"]["userId"] == alice["user_id"]
    await b.next_event("typing")

    await a.call(
        "modifyChatParticipants",
        {"chatId": chat_id, "userId": carol["user_id"], "operation": "REMOVE"},
    )
    removed = (await c.next_event("message"))["data"]  # told she was removed, and no more
    assert removed["system"] == {
        "action": "removed",
        "actorId": alice["user_id"],
        "userId": carol["user_id"],
    }
    for ws in (a, b):
        assert (await ws.next_event("message"))["data"]["system"]["action"] == "removed"
    before = await snapshot(container.engine)

    async def talk(n: int) -> None:
        await a.call("typing", {"chatId": chat_id, "state": "composing" if n % 2 else "paused"})
        await a.call(
            "sendMessage", {"chatId": chat_id, "clientMessageId": f"m{n}", "message": f"#{n}"}
        )
        frames = {f["event"]: f["data"] for f in await next_frames(b, 2)}
        assert frames["typing"]["userId"] == alice["user_id"]
        assert frames["message"]["message"] == f"#{n}"

    talked = await assert_like_no_chat(c, carol["user_id"], chat_id, talk)

    after = await snapshot(container.engine)
    assert after.members == before.members
    assert carol["user_id"] not in {row[1] for row in after.members if row[0] == chat_id}
    assert after.messages == before.messages + talked
    assert after.inbox == before.inbox + talked  # Bob's device only
    assert after.sent == before.sent + talked
    assert await c.call("getChats") == {"chats": []}
    # No messages, no typing after the removal: nothing came after "removed" up to
    # a barrier (tests.support).
    assert await settle_in_new_group(c, carol["user_id"], a) == []


async def test_typing_and_presence_reach_only_people_who_share_a_chat(
    user: Register, connect: Connect
) -> None:
    alice, bob, stranger = await user(), await user(), await user()
    s = await online(connect, stranger)
    a = await online(connect, alice)
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]]}))["chatId"]

    # Bob comes online: Alice hears it, the stranger does not.
    b = await online(connect, bob)
    online_event = await a.next_event("presence")
    assert online_event["data"] == {"userId": bob["user_id"], "state": "online", "lastSeen": None}

    await a.call("typing", {"chatId": chat_id, "state": "composing"})
    typing = await b.next_event("typing")
    assert typing["data"] == {"chatId": chat_id, "userId": alice["user_id"], "state": "composing"}

    await b.call("setPresence", {"state": "offline"})
    offline = await a.next_event("presence")
    assert offline["data"]["userId"] == bob["user_id"]
    assert offline["data"]["state"] == "offline"
    assert offline["data"]["lastSeen"]

    await b.close()
    assert (await a.next_event("presence"))["data"]["state"] == "offline"

    assert await s.ping_barrier() == []  # presence and typing are published before answers

    # Asking about them tells the stranger nothing; a contact learns the state.
    asked = {"userIds": [alice["user_id"], bob["user_id"]]}
    assert await s.call("getPresence", asked) == {"presence": []}
    seen = await a.call("getPresence", {"userIds": [bob["user_id"], stranger["user_id"]]})
    assert [p["userId"] for p in seen["presence"]] == [bob["user_id"]]
    assert seen["presence"][0]["state"] == "offline"
    assert seen["presence"][0]["lastSeen"]
    # The stranger going on and off line is not told to anyone either.
    await s.call("setPresence", {"state": "offline"})
    await s.call("setPresence", {"state": "online"})
    assert of_kind(await a.ping_barrier(), "presence") == []


async def test_a_former_member_learns_no_presence(user: Register, connect: Connect) -> None:
    alice, bob = await user(), await user()
    a = await online(connect, alice)
    b = await online(connect, bob)
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]], "name": "Brief"}))[
        "chatId"
    ]
    assert [
        p["userId"]
        for p in (await b.call("getPresence", {"userIds": [alice["user_id"]]}))["presence"]
    ] == [alice["user_id"]]
    await b.call(
        "modifyChatParticipants",
        {"chatId": chat_id, "userId": bob["user_id"], "operation": "REMOVE"},
    )
    await b.next_event("message")  # the "created" system message
    await b.next_event("message")  # "left"
    assert await b.call("getPresence", {"userIds": [alice["user_id"]]}) == {"presence": []}
    b.queued()
    await a.call("setPresence", {"state": "offline"})
    assert await b.ping_barrier() == []
