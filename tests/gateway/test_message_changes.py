"""Reactions, edits and deletes for everyone over live sockets, on both engines.

Each change is a queued event: every other device of the chat gets it after
the message, in order, and a device that was offline meanwhile converges when
it comes back. The tables are read directly to show what the server keeps.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from typing import Any

import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.domain.ids import new_id
from pigeon.storage.schema import attachment_links, attachments, inbox, messages, sent_messages
from tests.gateway.conftest import Connect, Register
from tests.live import WsClient
from tests.support import FakeClock, before_message, mark, online

CHANGES = ("message", "reaction", "messageEdited", "messageDeleted")
_numbers = itertools.count(3000)


async def person(user: Register, devices: int = 1) -> list[dict[str, Any]]:
    """A user with ``devices`` devices (none of them connected yet)."""
    phone = f"+1415555{next(_numbers):04d}"
    return [await user(phone, device=f"device-{index}") for index in range(devices)]


async def send(ws: WsClient, chat_id: str, text: str, **extra: Any) -> dict[str, Any]:
    data = {"chatId": chat_id, "clientMessageId": new_id(), "message": text, **extra}
    answer: dict[str, Any] = await ws.call("sendMessage", data)
    return answer


def changes_in(frames: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f["event"], f["data"]) for f in frames if f.get("event") in CHANGES]


async def changes_before(ws: WsClient, marker: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The messages and changes ``ws`` got before the message ``marker`` (a send's answer)."""
    return changes_in(await before_message(ws, marker["messageId"]))


async def backlog(connect: Connect, session: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What a device that was offline receives when it connects: its queue, in order."""
    ws = await connect(session)
    return changes_in(await ws.until(lambda frame: frame.get("event") == "drained"))


async def refused(ws: WsClient, type_: str, data: dict[str, Any]) -> dict[str, str]:
    answer = await ws.request(type_, data)
    assert answer["ok"] is False, answer
    error: dict[str, str] = answer["error"]
    return error


async def direct(ws: WsClient, other: dict[str, Any]) -> str:
    chat_id: str = (await ws.call("createChat", {"participants": [other["user_id"]]}))["chatId"]
    return chat_id


async def body_of(container: Container, message_id: str) -> str | None:
    async with container.engine.connect() as conn:
        query = sa.select(messages.c.body).where(messages.c.id == message_id)
        body: str | None = (await conn.execute(query)).scalar()
        return body


async def copies(container: Container, message_id: str) -> int:
    """How many queues still hold the message."""
    async with container.engine.connect() as conn:
        query = (
            sa.select(sa.func.count()).select_from(inbox).where(inbox.c.message_id == message_id)
        )
        return int((await conn.execute(query)).scalar_one())


# -- reactions -----------------------------------------------------------------------


async def test_reactions_are_replaced_and_removed_and_an_offline_device_converges(
    user: Register, connect: Connect
) -> None:
    alice, [bob] = await person(user, 2), await person(user)
    a = await online(connect, alice[0])
    b = await online(connect, bob)
    chat_id = await direct(a, bob)
    sent = await send(a, chat_id, "lunch?")
    ref = {"chatId": chat_id, "messageId": sent["messageId"]}

    first = await b.call("react", {**ref, "emoji": "👍🏽"})
    assert first["status"] == "SUCCESS"
    await b.call("react", {**ref, "emoji": "👨‍👩‍👧"})
    await b.call("react", {**ref, "emoji": ""})
    marker = await mark(b, chat_id)
    expected = [("reaction", "👍🏽"), ("reaction", "👨‍👩‍👧"), ("reaction", "")]
    got = await changes_before(a, marker)
    assert [(name, d["emoji"]) for name, d in got] == expected
    assert {(d["userId"], d["messageId"], d["chatId"]) for _, d in got} == {
        (bob["user_id"], sent["messageId"], chat_id)
    }
    assert got[0][1]["at"] == first["at"]
    # The reacting device is not told of its own reactions.
    own = await changes_before(b, await mark(a, chat_id))
    assert [name for name, _ in own] == ["message"]

    # Alice's second device was offline: the message, then each reaction, in order.
    later = await backlog(connect, alice[1])
    assert [(name, d.get("emoji")) for name, d in later][:4] == [("message", None), *expected]
    assert later[0][1]["messageId"] == sent["messageId"]


async def test_a_reaction_is_one_emoji(user: Register, connect: Connect) -> None:
    [alice], [bob] = await person(user), await person(user)
    a, b = await online(connect, alice), await online(connect, bob)
    chat_id = await direct(a, bob)
    sent = await send(a, chat_id, "hi")
    for bad in ("ab", "👍👍", "🏽", "👍 ", ":+1:"):
        error = await refused(
            b, "react", {"chatId": chat_id, "messageId": sent["messageId"], "emoji": bad}
        )
        assert error["code"] == "invalid_reaction", bad
    assert await changes_before(a, await mark(b, chat_id)) == []


# -- edits ---------------------------------------------------------------------------


async def test_the_sender_edits_within_the_window_and_the_old_text_is_not_kept(
    user: Register, connect: Connect, container: Container, clock: FakeClock
) -> None:
    alice, [bob] = await person(user, 2), await person(user)
    a, b = await online(connect, alice[0]), await online(connect, bob)
    chat_id = await direct(a, bob)
    sent = await send(a, chat_id, "see you at 8")
    ref = {"chatId": chat_id, "messageId": sent["messageId"]}

    clock.advance(minutes=14)
    edited = await a.call("editMessage", {**ref, "text": "see you at 9"})
    got = await changes_before(b, await mark(a, chat_id))
    assert [(name, d["message"]) for name, d in got] == [
        ("message", "see you at 8"),
        ("messageEdited", "see you at 9"),
    ]
    assert got[1][1]["userId"] == alice[0]["user_id"]
    assert got[1][1]["at"] == edited["at"]
    # Alice's other device has not received it yet: its queued copy has the new text only.
    assert await body_of(container, sent["messageId"]) == "see you at 9"
    later = await backlog(connect, alice[1])
    assert [(name, d["message"]) for name, d in later][:2] == [
        ("message", "see you at 9"),
        ("messageEdited", "see you at 9"),
    ]

    # Only the sender edits, only text, and only within the window.
    unknown = await refused(
        b, "editMessage", {"chatId": chat_id, "messageId": new_id(), "text": "x"}
    )
    assert unknown["code"] == "message_not_found"
    assert await refused(b, "editMessage", {**ref, "text": "mine now"}) == unknown
    attachment = await a.call(
        "createAttachment",
        {
            "body": base64.b64encode(b"notes").decode(),
            "hash": hashlib.sha256(b"notes").hexdigest(),
            "fileName": "notes.txt",
        },
    )
    with_file = await send(a, chat_id, "caption", attachments=[attachment["attachmentId"]])
    error = await refused(
        a, "editMessage", {"chatId": chat_id, "messageId": with_file["messageId"], "text": "new"}
    )
    assert error["code"] == "message_not_editable"
    assert (await refused(a, "editMessage", {**ref, "text": " "}))["code"] == "empty_message"
    clock.advance(minutes=1, seconds=1)  # 15 minutes and a second after sending
    assert (await refused(a, "editMessage", {**ref, "text": "at 10"}))["code"] == (
        "edit_window_closed"
    )
    assert [name for name, _ in await changes_before(b, await mark(a, chat_id))] == ["message"]


# -- deletes for everyone ------------------------------------------------------------


async def test_delete_for_everyone_removes_undelivered_copies_and_frees_attachments(
    user: Register, connect: Connect, container: Container, clock: FakeClock
) -> None:
    [alice], [bob], carol = await person(user), await person(user), await person(user, 2)
    a, b = await online(connect, alice), await online(connect, bob)
    c = await online(connect, carol[0])
    created = await a.call(
        "createChat", {"participants": [bob["user_id"], carol[0]["user_id"]], "name": "Trip"}
    )
    chat_id = created["chatId"]
    attachment = await b.call(
        "createAttachment",
        {
            "body": base64.b64encode(b"passport scan").decode(),
            "hash": hashlib.sha256(b"passport scan").hexdigest(),
            "fileName": "scan.txt",
        },
    )
    sent = await send(b, chat_id, "oops, wrong chat", attachments=[attachment["attachmentId"]])
    ref = {"chatId": chat_id, "messageId": sent["messageId"]}
    deleted = await b.call("deleteMessage", ref)
    marker = await mark(b, chat_id)
    for ws in (a, c):
        got = await changes_before(ws, marker)
        assert [(name, d["messageId"]) for name, d in got][-2:] == [
            ("message", sent["messageId"]),
            ("messageDeleted", sent["messageId"]),
        ]
        assert got[-1][1]["userId"] == bob["user_id"]
        assert got[-1][1]["at"] == deleted["at"]

    # Carol's second device was offline: it never receives the original.
    assert await copies(container, sent["messageId"]) == 0
    assert await body_of(container, sent["messageId"]) is None
    later = await backlog(connect, carol[1])
    assert ("messageDeleted", sent["messageId"]) in [(n, d["messageId"]) for n, d in later]
    assert sent["messageId"] not in [d["messageId"] for n, d in later if n == "message"]
    # The send record stays (a retry gets its answer) and says it was deleted.
    async with container.engine.connect() as conn:
        record = sa.select(sent_messages.c.deleted_at, sent_messages.c.has_attachments).where(
            sent_messages.c.message_id == sent["messageId"]
        )
        deleted_at, has_attachments = (await conn.execute(record)).one()
        links = sa.select(sa.func.count()).select_from(attachment_links)
        assert deleted_at is not None
        assert has_attachments is True
        assert (await conn.execute(links)).scalar_one() == 0
    # Nothing carries the file any more: the purge frees it.
    clock.advance(hours=1, minutes=1)
    await container.media.purge()
    async with container.engine.connect() as conn:
        assert (await conn.execute(sa.select(attachments.c.id))).all() == []
    # A deleted message can no longer be changed.
    gone = await refused(c, "react", {**ref, "emoji": "😮"})
    assert gone["code"] == "message_not_found"
    assert (await refused(b, "deleteMessage", ref)) == gone


async def test_a_group_admin_deletes_any_message_a_member_only_their_own(
    user: Register, connect: Connect, clock: FakeClock
) -> None:
    [alice], [bob], [carol] = await person(user), await person(user), await person(user)
    a, b, c = [await online(connect, s) for s in (alice, bob, carol)]
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"], carol["user_id"]]}))[
        "chatId"
    ]
    first, second, third = [await send(b, chat_id, f"m{i}") for i in range(3)]
    unknown = await refused(c, "deleteMessage", {"chatId": chat_id, "messageId": new_id()})
    assert unknown["code"] == "message_not_found"
    assert (
        await refused(c, "deleteMessage", {"chatId": chat_id, "messageId": first["messageId"]})
        == unknown
    )
    await a.call("deleteMessage", {"chatId": chat_id, "messageId": first["messageId"]})
    got = await changes_before(c, await mark(a, chat_id))
    assert ("messageDeleted", first["messageId"]) in [(n, d["messageId"]) for n, d in got]

    clock.advance(hours=48)
    await b.call("deleteMessage", {"chatId": chat_id, "messageId": second["messageId"]})
    clock.advance(seconds=1)
    error = await refused(a, "deleteMessage", {"chatId": chat_id, "messageId": third["messageId"]})
    assert error["code"] == "delete_window_closed"
    # 1:1 chats have no admins: each side deletes only their own.
    one_to_one = await direct(a, bob)
    theirs = await send(b, one_to_one, "mine")
    assert (
        await refused(a, "deleteMessage", {"chatId": one_to_one, "messageId": theirs["messageId"]})
        == unknown
    )


# -- attackers -----------------------------------------------------------------------


async def test_outsiders_removed_members_and_plain_members_get_the_unknown_message_answer(
    user: Register, connect: Connect
) -> None:
    [alice], [bob], [mallory], [eve] = [await person(user) for _ in range(4)]
    a, b, m, e = [await online(connect, s) for s in (alice, bob, mallory, eve)]
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"], eve["user_id"]]}))[
        "chatId"
    ]
    sent = await send(a, chat_id, "members only")
    await a.call(
        "modifyChatParticipants",
        {"chatId": chat_id, "userId": eve["user_id"], "operation": "REMOVE"},
    )
    ref = {"chatId": chat_id, "messageId": sent["messageId"]}
    attempts = [
        ("react", {"emoji": "🔥"}),
        ("editMessage", {"text": "pwned"}),
        ("deleteMessage", {}),
    ]
    unknown = await refused(
        a, "editMessage", {"chatId": chat_id, "messageId": new_id(), "text": "x"}
    )
    for attacker in (m, e):  # never in the chat; removed from it
        for command, extra in attempts:
            assert await refused(attacker, command, {**ref, **extra}) == unknown, command
            other_chat = {"chatId": new_id(), "messageId": sent["messageId"], **extra}
            assert await refused(attacker, command, other_chat) == unknown, command
    for command, extra in attempts[1:]:  # a plain member, on another's message
        assert await refused(b, command, {**ref, **extra}) == unknown, command
    # Nobody in the chat heard of any of it.
    got = await changes_before(b, await mark(a, chat_id))
    assert [name for name, _ in got if name != "message"] == []
