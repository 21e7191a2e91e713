"""Attack suite: membership is the only key to a chat, its messages and its attachments.

Every operation that names a chat or an attachment is tried by three attackers:
an outsider who was never in the chat, a member who was removed from it, and a
user guessing ids (same-millisecond ULIDs, the real id in lower case). Each gets
exactly the answer a random, nonexistent id gets (code and message); the
database does not move, the attackers' sockets hear nothing of the chat and the
members hear nothing of the attackers. A plain member cannot do an admin's job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from ulid import ULID

from pigeon.bootstrap import Container
from pigeon.domain.ids import new_id
from pigeon.storage.schema import (
    attachment_links,
    attachments,
    chat_members,
    chats,
    inbox,
    inbox_counters,
    messages,
    sent_messages,
    uploads,
)
from tests.gateway.conftest import Connect, Register
from tests.live import WsClient
from tests.support import bearer, online, settle

TABLES = (
    chats,
    chat_members,
    messages,
    inbox,
    inbox_counters,
    sent_messages,
    attachments,
    attachment_links,
    uploads,
)
SECRET = "the launch code is 4711"
PDF = b"%PDF-1.4\n%private\n" + bytes(range(32, 127)) * 4 + b"\n%%EOF\n"


async def dump(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables an attacker could change, comparable before and after."""
    async with engine.connect() as conn:
        return {
            table.name: sorted(
                (tuple(row) for row in await conn.execute(sa.select(table))), key=repr
            )
            for table in TABLES
        }


def guessed(real_id: str) -> list[str]:
    """Ids an attacker would try next to a real one: the same millisecond, another case."""
    same_millisecond = real_id[:10] + str(ULID())[10:]
    return [same_millisecond, real_id.lower()]


@dataclass(frozen=True)
class Target:
    """What one attempt names: the chat, the attachment, the upload, the attacker's things."""

    chat: str
    attachment: str
    upload: str
    me: str
    admin: str
    own_chat: str
    message: str  # the message in the chat (reactions, edits, deletes, forwards name it)


@dataclass
class Attacker:
    label: str
    session: dict[str, Any]
    ws: WsClient
    real: list[Target]  # the real ids (or guesses at them)


@dataclass
class World:
    alice: dict[str, Any]  # the admin
    bob: dict[str, Any]  # a plain member
    carol: dict[str, Any]  # removed from the group
    mallory: dict[str, Any]  # never in it
    a: WsClient
    b: WsClient
    c: WsClient
    m: WsClient
    group: str
    attachment: str
    upload: str  # alice's upload in progress
    own_chat: str  # carol's and mallory's 1:1 chat
    message: str  # alice's message in the group (carol received it while she was in)

    def attackers(self) -> list[Attacker]:
        def target(session: dict[str, Any]) -> Target:
            return Target(
                self.group,
                self.attachment,
                self.upload,
                session["user_id"],
                self.alice["user_id"],
                self.own_chat,
                self.message,
            )

        guesses = [
            replace(
                target(self.mallory),
                chat=chat,
                attachment=attachment,
                upload=upload,
                message=message,
            )
            for chat, attachment, upload, message in zip(
                guessed(self.group),
                guessed(self.attachment),
                guessed(self.upload),
                guessed(self.message),
                strict=True,
            )
        ]
        return [
            Attacker("outsider", self.mallory, self.m, [target(self.mallory)]),
            Attacker("removed", self.carol, self.c, [target(self.carol)]),
            Attacker("guesser", self.mallory, self.m, guesses),
        ]


async def build_world(client: httpx.AsyncClient, user: Register, connect: Connect) -> World:
    alice, bob, carol, mallory = await user(), await user(), await user(), await user()
    # Devices that never ack, so the database only changes by what the test does.
    a, b, c, m = [await online(connect, s, auto_ack=False) for s in (alice, bob, carol, mallory)]
    group = (
        await a.call(
            "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "Private"}
        )
    )["chatId"]
    upload = await client.post(
        "/v1/attachments",
        content=PDF,
        headers={
            **bearer(alice),
            "X-Content-SHA256": hashlib.sha256(PDF).hexdigest(),
            "X-File-Name": "plan.pdf",
            "Content-Type": "application/octet-stream",
        },
    )
    assert upload.status_code == 201, upload.text
    attachment = upload.json()["attachmentId"]
    sent = await a.call(
        "sendMessage",
        {"chatId": group, "clientMessageId": "m1", "message": SECRET, "attachments": [attachment]},
    )
    # Carol could read it while she was in.
    assert (await download(client, carol, attachment))[0] == 200
    await a.call(
        "modifyChatParticipants",
        {"chatId": group, "userId": carol["user_id"], "operation": "REMOVE"},
    )
    own_chat = (await m.call("createChat", {"participants": [carol["user_id"]]}))["chatId"]
    started = await client.post(
        "/v1/uploads",
        json={"size": len(PDF), "sha256": hashlib.sha256(PDF).hexdigest(), "fileName": "b.pdf"},
        headers=bearer(alice),
    )
    assert started.status_code == 201, started.text
    # created + removed for the sender; created + text + removed for the others.
    for ws, count in ((a, 2), (b, 3), (c, 3)):
        await ws.collect("message", count)
    upload_id = started.json()["uploadId"]
    return World(
        alice,
        bob,
        carol,
        mallory,
        a,
        b,
        c,
        m,
        group,
        attachment,
        upload_id,
        own_chat,
        sent["messageId"],
    )


async def download(
    client: httpx.AsyncClient, session: dict[str, Any], attachment: str, suffix: str = ""
) -> tuple[int, Any]:
    response = await client.get(f"/v1/attachments/{attachment}{suffix}", headers=bearer(session))
    body = response.json() if response.headers.get("content-type") == "application/json" else None
    return response.status_code, body


# -- the operations -------------------------------------------------------------------

Run = Callable[[httpx.AsyncClient, Attacker, Target], Awaitable[Any]]


def command(type_: str, data: Callable[[Target], dict[str, Any]]) -> Run:
    async def run(client: httpx.AsyncClient, attacker: Attacker, target: Target) -> Any:
        answer = await attacker.ws.request(type_, data(target))
        assert answer["ok"] is False, answer
        return answer["error"]

    return run


def http(suffix: str) -> Run:
    async def run(client: httpx.AsyncClient, attacker: Attacker, target: Target) -> Any:
        return await download(client, attacker.session, target.attachment, suffix)

    return run


def upload_request(method: str) -> Run:
    async def run(client: httpx.AsyncClient, attacker: Attacker, target: Target) -> Any:
        response = await client.request(
            method,
            f"/v1/uploads/{target.upload}",
            content=PDF[:10] if method == "PATCH" else None,
            headers={**bearer(attacker.session), "Upload-Offset": "0"},
        )
        return response.status_code, response.json()

    return run


def mute_request(method: str) -> Run:
    async def run(client: httpx.AsyncClient, attacker: Attacker, target: Target) -> Any:
        response = await client.request(
            method,
            f"/v1/chats/{target.chat}/mute",
            json={"duration": "always"} if method == "PUT" else None,
            headers=bearer(attacker.session),
        )
        return response.status_code, response.json()

    return run


@dataclass(frozen=True)
class Operation:
    name: str
    run: Run
    code: str  # what a nonexistent object gets

    def __str__(self) -> str:
        return self.name


def _send(t: Target) -> dict[str, Any]:
    return {"chatId": t.chat, "clientMessageId": new_id(), "message": "let me in"}


OPERATIONS = [
    Operation("sendMessage", command("sendMessage", _send), "chat_not_found"),
    Operation(
        "markRead",
        command("markRead", lambda t: {"chatId": t.chat, "upToSeq": 1_000}),
        "chat_not_found",
    ),
    Operation("getChat", command("getChat", lambda t: {"chatId": t.chat}), "chat_not_found"),
    Operation(
        "typing",
        command("typing", lambda t: {"chatId": t.chat, "state": "composing"}),
        "chat_not_found",
    ),
    Operation(
        "add-self",
        command(
            "modifyChatParticipants",
            lambda t: {"chatId": t.chat, "userId": t.me, "operation": "ADD"},
        ),
        "chat_not_found",
    ),
    Operation(
        "remove-admin",
        command(
            "modifyChatParticipants",
            lambda t: {"chatId": t.chat, "userId": t.admin, "operation": "REMOVE"},
        ),
        "chat_not_found",
    ),
    Operation(
        "promote-self",
        command("setRole", lambda t: {"chatId": t.chat, "userId": t.me, "role": "admin"}),
        "chat_not_found",
    ),
    Operation(
        "demote-admin",
        command("setRole", lambda t: {"chatId": t.chat, "userId": t.admin, "role": "member"}),
        "chat_not_found",
    ),
    Operation(
        "rename",
        command("updateChat", lambda t: {"chatId": t.chat, "name": "0wned"}),
        "chat_not_found",
    ),
    Operation(
        "send-foreign-attachment",
        command(
            "sendMessage",
            lambda t: {
                "chatId": t.own_chat,
                "clientMessageId": new_id(),
                "message": "look what I found",
                "attachments": [t.attachment],
            },
        ),
        "attachment_not_found",
    ),
    Operation(
        "react",
        command("react", lambda t: {"chatId": t.chat, "messageId": t.message, "emoji": "🔥"}),
        "message_not_found",
    ),
    Operation(
        "editMessage",
        command(
            "editMessage", lambda t: {"chatId": t.chat, "messageId": t.message, "text": "0wned"}
        ),
        "message_not_found",
    ),
    Operation(
        "deleteMessage",
        command("deleteMessage", lambda t: {"chatId": t.chat, "messageId": t.message}),
        "message_not_found",
    ),
    Operation(
        "forward",
        command(
            "sendMessage",
            lambda t: {
                "chatId": t.own_chat,
                "clientMessageId": new_id(),
                "message": "fwd",
                "forwardedFrom": {"chatId": t.chat, "messageId": t.message},
            },
        ),
        "message_not_found",
    ),
    Operation(
        "setDisappearing",
        command("setDisappearing", lambda t: {"chatId": t.chat, "seconds": 86400}),
        "chat_not_found",
    ),
    Operation("GET attachment", http(""), "attachment_not_found"),
    Operation("GET attachment link", http("/link"), "attachment_not_found"),
    Operation("GET upload", upload_request("GET"), "upload_not_found"),
    Operation("PATCH upload", upload_request("PATCH"), "upload_not_found"),
    Operation(
        "muteChat",
        command("muteChat", lambda t: {"chatId": t.chat, "duration": "always"}),
        "chat_not_found",
    ),
    Operation("PUT mute", mute_request("PUT"), "chat_not_found"),
    Operation("DELETE mute", mute_request("DELETE"), "chat_not_found"),
]


def assert_nonexistent_answer(answer: Any, code: str) -> None:
    if isinstance(answer, tuple):  # HTTP
        status, body = answer
        assert status == 404, answer
        assert body["error"]["code"] == code, answer
    else:
        assert answer["code"] == code, answer


async def heard(w: World) -> dict[str, list[dict[str, Any]]]:
    """What each socket received, up to a barrier (tests.support): a marker each way in
    the group (the members) and in the attackers' own 1:1 chat (the attackers)."""
    return {
        "a": await settle(w.a, w.b, w.group),
        "b": await settle(w.b, w.a, w.group),
        "c": await settle(w.c, w.m, w.own_chat),
        "m": await settle(w.m, w.c, w.own_chat),
    }


def leaks(frames: list[dict[str, Any]], *secrets: str) -> list[dict[str, Any]]:
    """Frames that are not presence, or that mention any of ``secrets``."""
    return [
        f
        for f in frames
        if f.get("event") != "presence" or any(s in json.dumps(f) for s in secrets)
    ]


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
async def test_attackers_get_the_nonexistent_answer_and_change_nothing(
    operation: Operation,
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    container: Container,
) -> None:
    w = await build_world(client, user, connect)
    before = await dump(container.engine)

    for attacker in w.attackers():
        nowhere = replace(
            attacker.real[0], chat=new_id(), attachment=new_id(), upload=new_id(), message=new_id()
        )
        expected = await operation.run(client, attacker, nowhere)
        assert_nonexistent_answer(expected, operation.code)
        for target in attacker.real:
            answer = await operation.run(client, attacker, target)
            assert answer == expected, (attacker.label, target)

    assert await dump(container.engine) == before  # each attempt was answered: committed
    heard_by = await heard(w)
    secrets = (w.group, w.attachment, SECRET, "0wned")
    for name in ("m", "c"):  # the attackers hear nothing about the chat
        assert leaks(heard_by[name], *secrets) == []
    for name in ("a", "b"):  # the members hear nothing from the attackers
        assert leaks(heard_by[name]) == []

    # The group is intact: alice is still its admin and bob still hears her.
    await w.a.call(
        "sendMessage", {"chatId": w.group, "clientMessageId": "m2", "message": "still here"}
    )
    assert (await w.b.next_event("message"))["data"]["message"] == "still here"
    chat = await w.b.call("getChat", {"chatId": w.group})
    assert {m["userId"]: m["role"] for m in chat["members"]} == {
        w.alice["user_id"]: "admin",
        w.bob["user_id"]: "member",
    }
    assert chat["name"] == "Private"
    assert (await download(client, w.bob, w.attachment))[0] == 200
    # Alice's upload was untouched: it completes from offset 0 with the right hash.
    finished = await client.patch(
        f"/v1/uploads/{w.upload}", content=PDF, headers={**bearer(w.alice), "Upload-Offset": "0"}
    )
    assert finished.status_code == 200, finished.text
    assert finished.json()["attachment"]["size"] == len(PDF)


# -- a plain member is not an admin ------------------------------------------------

MEMBER_ATTEMPTS: dict[str, Callable[[World], tuple[str, dict[str, Any]]]] = {
    "promote-self": lambda w: (
        "setRole",
        {"chatId": w.group, "userId": w.bob["user_id"], "role": "admin"},
    ),
    "demote-admin": lambda w: (
        "setRole",
        {"chatId": w.group, "userId": w.alice["user_id"], "role": "member"},
    ),
    "remove-admin": lambda w: (
        "modifyChatParticipants",
        {"chatId": w.group, "userId": w.alice["user_id"], "operation": "REMOVE"},
    ),
    "add-someone": lambda w: (
        "modifyChatParticipants",
        {"chatId": w.group, "userId": w.mallory["user_id"], "operation": "ADD"},
    ),
    "rename": lambda w: ("updateChat", {"chatId": w.group, "name": "Bob's group"}),
    "disappearing": lambda w: ("setDisappearing", {"chatId": w.group, "seconds": 86400}),
}


@pytest.mark.parametrize("attempt", list(MEMBER_ATTEMPTS))
async def test_a_plain_member_cannot_act_as_admin(
    attempt: str,
    client: httpx.AsyncClient,
    user: Register,
    connect: Connect,
    container: Container,
) -> None:
    w = await build_world(client, user, connect)
    before = await dump(container.engine)

    type_, data = MEMBER_ATTEMPTS[attempt](w)
    answer = await w.b.request(type_, data)
    assert answer["ok"] is False
    assert answer["error"]["code"] == "not_admin", answer

    assert await dump(container.engine) == before
    for frames in (await heard(w)).values():  # no system message went anywhere
        assert leaks(frames) == []
    chat = await w.a.call("getChat", {"chatId": w.group})
    assert chat["name"] == "Private"
    assert {m["userId"]: m["role"] for m in chat["members"]} == {
        w.alice["user_id"]: "admin",
        w.bob["user_id"]: "member",
    }
