"""1:1 chats and groups over live sockets: creating, membership, roles, fan-out, seqs."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from pigeon.config import Settings
from tests.gateway.conftest import Connect, Register
from tests.live import WsClient
from tests.support import FakeClock, barrier_group, before_message, burst, mark, online


async def next_system(ws: WsClient, chat_id: str) -> dict[str, Any]:
    """The next message event on ``ws``; it must be a system message of ``chat_id``."""
    event = await ws.next_event("message")
    data: dict[str, Any] = event["data"]
    assert data["chatId"] == chat_id
    assert data["kind"] == "system", data
    assert data["senderId"] is None
    return data


def messages_in(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [frame for frame in frames if frame.get("event") == "message"]


async def members_of(ws: WsClient, chat_id: str) -> dict[str, str]:
    chat = await ws.call("getChat", {"chatId": chat_id})
    return {m["userId"]: m["role"] for m in chat["members"]}


async def error_code(ws: WsClient, type_: str, data: dict[str, Any]) -> str:
    answer = await ws.request(type_, data)
    assert answer["ok"] is False, answer
    code: str = answer["error"]["code"]
    return code


# -- 1:1 chats -------------------------------------------------------------------


async def test_one_to_one_chat_is_created_once(user: Register, connect: Connect) -> None:
    alice, bob, carol = await user(), await user(), await user()
    a = await online(connect, alice)
    b = await online(connect, bob)
    first = await a.call("createChat", {"participants": [bob["user_id"]]})
    assert first["created"] is True
    again = await a.call("createChat", {"participants": [bob["user_id"]]})
    assert again == {"chatId": first["chatId"], "created": False}
    # Naming yourself too is the same pair.
    with_self = await a.call("createChat", {"participants": [alice["user_id"], bob["user_id"]]})
    assert with_self == {"chatId": first["chatId"], "created": False}
    # The other side asking gets the same chat.
    from_bob = await b.call("createChat", {"participants": [alice["user_id"]]})
    assert from_bob == {"chatId": first["chatId"], "created": False}
    # A different pair is a different chat.
    other = await a.call("createChat", {"participants": [carol["user_id"]]})
    assert other["created"] is True
    assert other["chatId"] != first["chatId"]

    chat = await b.call("getChat", {"chatId": first["chatId"]})
    assert chat["kind"] == "direct"
    assert chat["createdBy"] == alice["user_id"]
    assert sorted(m["userId"] for m in chat["members"]) == sorted(
        [alice["user_id"], bob["user_id"]]
    )
    assert {m["role"] for m in chat["members"]} == {"member"}
    chats = (await b.call("getChats"))["chats"]
    assert [(c["chatId"], c["kind"]) for c in chats] == [(first["chatId"], "direct")]
    # A 1:1 chat has no members to change.
    assert (
        await error_code(
            a,
            "modifyChatParticipants",
            {"chatId": first["chatId"], "userId": carol["user_id"], "operation": "ADD"},
        )
        == "not_a_group"
    )


async def test_create_chat_refuses_bad_participants(user: Register, connect: Connect) -> None:
    alice = await user()
    a = await online(connect, alice)
    assert (
        await error_code(a, "createChat", {"participants": [alice["user_id"]]})
        == "invalid_participants"
    )
    assert (
        await error_code(a, "createChat", {"participants": ["01J0000000000000000000NOPE"]})
        == "user_not_found"
    )
    assert await a.call("getChats") == {"chats": []}


# -- groups ----------------------------------------------------------------------


async def test_group_creator_is_admin_and_everyone_hears_of_it(
    user: Register, connect: Connect
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    a, b, c = [await online(connect, s) for s in (alice, bob, carol)]
    created = await a.call(
        "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "Hike"}
    )
    assert created["created"] is True
    chat_id = created["chatId"]
    for ws in (a, b, c):
        system = await next_system(ws, chat_id)
        assert system["seq"] == 1
        assert system["system"]["action"] == "created"
        assert system["system"]["actorId"] == alice["user_id"]
        assert system["system"]["name"] == "Hike"
        assert sorted(system["system"]["members"]) == sorted(
            [alice["user_id"], bob["user_id"], carol["user_id"]]
        )

    chat = await c.call("getChat", {"chatId": chat_id})
    assert chat["kind"] == "group"
    assert chat["name"] == "Hike"
    assert chat["createdBy"] == alice["user_id"]
    assert chat["lastSeq"] == 1
    assert {m["userId"]: m["role"] for m in chat["members"]} == {
        alice["user_id"]: "admin",
        bob["user_id"]: "member",
        carol["user_id"]: "member",
    }
    for ws, role in ((a, "admin"), (b, "member")):
        chats = (await ws.call("getChats"))["chats"]
        assert [(x["chatId"], x["kind"], x["name"], x["role"]) for x in chats] == [
            (chat_id, "group", "Hike", role)
        ]
    # Two people with a name make a group, not their 1:1 chat.
    pair = await a.call("createChat", {"participants": [bob["user_id"]], "name": "Duo"})
    assert pair["created"] is True
    assert (await b.call("getChat", {"chatId": pair["chatId"]}))["kind"] == "group"


async def test_admin_adds_a_member_and_everyone_hears_of_it(
    user: Register, connect: Connect
) -> None:
    alice, bob, dave = await user(), await user(), await user()
    a, b, d = [await online(connect, s) for s in (alice, bob, dave)]
    chat_id = (await a.call("createChat", {"participants": [bob["user_id"]], "name": "Club"}))[
        "chatId"
    ]
    for ws in (a, b):
        await next_system(ws, chat_id)
    assert (
        await error_code(d, "getChat", {"chatId": chat_id}) == "chat_not_found"
    )  # not yet a member

    added = await a.call(
        "modifyChatParticipants",
        {"chatId": chat_id, "userId": dave["user_id"], "operation": "ADD"},
    )
    assert added == {"status": "SUCCESS"}
    for ws in (a, b, d):
        system = await next_system(ws, chat_id)
        assert system["seq"] == 2
        assert system["system"] == {
            "action": "added",
            "actorId": alice["user_id"],
            "userId": dave["user_id"],
        }
    assert (await members_of(d, chat_id))[dave["user_id"]] == "member"
    assert (
        await error_code(
            a,
            "modifyChatParticipants",
            {"chatId": chat_id, "userId": dave["user_id"], "operation": "ADD"},
        )
        == "already_member"
    )
    # The new member takes part at once.
    await d.call("sendMessage", {"chatId": chat_id, "clientMessageId": "hi", "message": "hi all"})
    for ws in (a, b):
        assert (await ws.next_event("message"))["data"]["message"] == "hi all"


async def test_a_member_cannot_manage_the_group(user: Register, connect: Connect) -> None:
    alice, bob, carol, dave = await user(), await user(), await user(), await user()
    a, b, c = [await online(connect, s) for s in (alice, bob, carol)]
    d = await online(connect, dave)
    chat_id = (
        await a.call(
            "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "Board"}
        )
    )["chatId"]
    for ws in (a, b, c):
        await next_system(ws, chat_id)
    before = await b.call("getChat", {"chatId": chat_id})

    attempts: list[tuple[str, dict[str, Any]]] = [
        ("modifyChatParticipants", {"userId": dave["user_id"], "operation": "ADD"}),
        ("modifyChatParticipants", {"userId": carol["user_id"], "operation": "REMOVE"}),
        ("modifyChatParticipants", {"userId": alice["user_id"], "operation": "REMOVE"}),
        ("setRole", {"userId": bob["user_id"], "role": "admin"}),
        ("setRole", {"userId": alice["user_id"], "role": "member"}),
        ("updateChat", {"name": "Bob's board"}),
    ]
    for type_, data in attempts:
        assert await error_code(b, type_, {"chatId": chat_id, **data}) == "not_admin", type_

    after = await b.call("getChat", {"chatId": chat_id})
    assert after == before
    assert after["name"] == "Board"
    assert await d.call("getChats") == {"chats": []}
    # No system message went out: none came before a new group's first message.
    others = [bob["user_id"], carol["user_id"], dave["user_id"]]
    for frames in await barrier_group(a, others, [a, b, c, d]):
        assert messages_in(frames) == []


async def test_admin_promotes_and_the_last_admin_cannot_step_down(
    user: Register, connect: Connect
) -> None:
    alice, bob, carol = await user(), await user(), await user()
    a, b, c = [await online(connect, s) for s in (alice, bob, carol)]
    chat_id = (
        await a.call(
            "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "Ops"}
        )
    )["chatId"]
    for ws in (a, b, c):
        await next_system(ws, chat_id)

    demote_self = {"chatId": chat_id, "userId": alice["user_id"], "role": "member"}
    assert await error_code(a, "setRole", demote_self) == "last_admin"

    # The refusal sent nothing: the next message everyone gets is this promotion's.
    await a.call("setRole", {"chatId": chat_id, "userId": bob["user_id"], "role": "admin"})
    for ws in (a, b, c):
        system = await next_system(ws, chat_id)
        assert system["system"] == {
            "action": "role",
            "actorId": alice["user_id"],
            "userId": bob["user_id"],
            "role": "admin",
        }
    # Bob, now admin, can do what admins do.
    await b.call("updateChat", {"chatId": chat_id, "name": "Ops team"})
    for ws in (a, b, c):
        system = await next_system(ws, chat_id)
        assert system["system"] == {
            "action": "renamed",
            "actorId": bob["user_id"],
            "name": "Ops team",
        }
    # With two admins Alice may step down; then Bob is the only one and may not.
    await a.call("setRole", demote_self)
    assert await members_of(c, chat_id) == {
        alice["user_id"]: "member",
        bob["user_id"]: "admin",
        carol["user_id"]: "member",
    }
    assert (
        await error_code(
            b, "setRole", {"chatId": chat_id, "userId": bob["user_id"], "role": "member"}
        )
        == "last_admin"
    )
    assert (await members_of(c, chat_id))[bob["user_id"]] == "admin"
    chats = {x["chatId"]: x for x in (await c.call("getChats"))["chats"]}
    assert chats[chat_id]["name"] == "Ops team"


async def test_a_member_leaves(user: Register, connect: Connect) -> None:
    alice, bob, carol = await user(), await user(), await user()
    a, b, c = [await online(connect, s) for s in (alice, bob, carol)]
    chat_id = (
        await a.call(
            "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "Book club"}
        )
    )["chatId"]
    for ws in (a, b, c):
        await next_system(ws, chat_id)

    left = await c.call(
        "modifyChatParticipants",
        {"chatId": chat_id, "userId": carol["user_id"], "operation": "REMOVE"},
    )
    assert left == {"status": "SUCCESS"}
    for ws in (a, b, c):  # the one who left hears of it too
        system = await next_system(ws, chat_id)
        assert system["system"] == {
            "action": "left",
            "actorId": carol["user_id"],
            "userId": carol["user_id"],
        }
    assert set(await members_of(a, chat_id)) == {alice["user_id"], bob["user_id"]}
    assert await error_code(c, "getChat", {"chatId": chat_id}) == "chat_not_found"
    assert await c.call("getChats") == {"chats": []}


async def test_the_last_admin_leaving_promotes_the_longest_standing_member(
    user: Register, connect: Connect, clock: FakeClock
) -> None:
    alice = await user()
    others = [await user() for _ in range(4)]
    # The first to join has the largest user id, so neither id order nor chance picks them.
    others.sort(key=lambda s: s["user_id"], reverse=True)
    veteran, *newcomers = others
    a = await online(connect, alice)
    sockets = {s["user_id"]: await online(connect, s) for s in others}
    chat_id = (await a.call("createChat", {"participants": [veteran["user_id"]], "name": "Heirs"}))[
        "chatId"
    ]
    for newcomer in newcomers:
        clock.advance(minutes=1)
        await a.call(
            "modifyChatParticipants",
            {"chatId": chat_id, "userId": newcomer["user_id"], "operation": "ADD"},
        )
    clock.advance(minutes=1)
    await a.call(
        "modifyChatParticipants",
        {"chatId": chat_id, "userId": alice["user_id"], "operation": "REMOVE"},
    )
    for ws in sockets.values():
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < 2:  # skip the earlier "created" and "added" messages
            data = (await ws.next_event("message"))["data"]
            if data["system"]["action"] in ("left", "role"):
                seen[data["system"]["action"]] = data
        assert seen["left"]["system"]["userId"] == alice["user_id"]
        assert seen["role"]["system"] == {
            "action": "role",
            "actorId": None,
            "userId": veteran["user_id"],
            "role": "admin",
        }
        assert seen["role"]["seq"] > seen["left"]["seq"]
    roles = await members_of(sockets[newcomers[0]["user_id"]], chat_id)
    assert roles == {
        veteran["user_id"]: "admin",
        **{n["user_id"]: "member" for n in newcomers},
    }
    # The heir acts as admin.
    await sockets[veteran["user_id"]].call("updateChat", {"chatId": chat_id, "name": "Heirs II"})


class TestGroupSizeCap:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_group_members": 5})

    async def test_a_group_has_at_most_max_group_members(
        self, user: Register, connect: Connect
    ) -> None:
        alice = await user()
        others = [await user() for _ in range(5)]
        a = await online(connect, alice)
        ids = [s["user_id"] for s in others]
        too_many = {"participants": ids, "name": "Six"}
        assert await error_code(a, "createChat", too_many) == "group_full"
        assert await a.call("getChats") == {"chats": []}

        chat_id = (await a.call("createChat", {"participants": ids[:4], "name": "Five"}))["chatId"]
        add_sixth = {"chatId": chat_id, "userId": ids[4], "operation": "ADD"}
        assert await error_code(a, "modifyChatParticipants", add_sixth) == "group_full"
        assert len(await members_of(a, chat_id)) == 5
        # Once someone leaves there is room again.
        await a.call(
            "modifyChatParticipants", {"chatId": chat_id, "userId": ids[0], "operation": "REMOVE"}
        )
        assert await a.call("modifyChatParticipants", add_sixth) == {"status": "SUCCESS"}
        assert set(await members_of(a, chat_id)) == {alice["user_id"], *ids[1:]}


# -- fan-out and ordering ----------------------------------------------------------


async def test_a_group_message_reaches_every_device_but_the_senders_own(
    user: Register, connect: Connect
) -> None:
    alice_phone = await user("+14155550200", "phone")
    alice_laptop = await user("+14155550200", "laptop")
    bob_phone = await user("+14155550201", "phone")
    bob_laptop = await user("+14155550201", "laptop")
    carol = await user("+14155550202", "phone")
    a1, a2, b1, b2, c1 = [
        await online(connect, s) for s in (alice_phone, alice_laptop, bob_phone, bob_laptop, carol)
    ]
    chat_id = (
        await a1.call(
            "createChat",
            {"participants": [bob_phone["user_id"], carol["user_id"]], "name": "Family"},
        )
    )["chatId"]
    for ws in (a1, a2, b1, b2, c1):
        await next_system(ws, chat_id)

    sent = await a1.call(
        "sendMessage", {"chatId": chat_id, "clientMessageId": "dinner", "message": "Dinner at 8"}
    )
    for ws in (a2, b1, b2, c1):
        data = (await ws.next_event("message"))["data"]
        assert data["messageId"] == sent["messageId"]
        assert data["seq"] == sent["seq"]
        assert data["kind"] == "text"
        assert data["message"] == "Dinner at 8"
        assert data["senderId"] == alice_phone["user_id"]
        assert data["senderDeviceId"] == alice_phone["device_id"]

    # From the laptop this time: the phone gets it (and had not got its own message
    # before it), the laptop does not.
    sent = await a2.call(
        "sendMessage", {"chatId": chat_id, "clientMessageId": "late", "message": "Make it 9"}
    )
    for ws in (a1, b1, b2, c1):
        data = (await ws.next_event("message"))["data"]
        assert (data["messageId"], data["senderDeviceId"]) == (
            sent["messageId"],
            alice_laptop["device_id"],
        )
    marker = await mark(b1, chat_id)
    assert messages_in(await before_message(a2, marker["messageId"])) == []


async def test_seq_is_strictly_increasing_and_the_same_for_every_receiver(
    user: Register, connect: Connect
) -> None:
    alice_phone = await user("+14155550210", "phone")
    alice_laptop = await user("+14155550210", "laptop")
    bob, carol = await user(), await user()
    a1, a2, b, c = [await online(connect, s) for s in (alice_phone, alice_laptop, bob, carol)]
    chat_id = (
        await a1.call(
            "createChat", {"participants": [bob["user_id"], carol["user_id"]], "name": "Race"}
        )
    )["chatId"]
    for ws in (a1, a2, b, c):
        await next_system(ws, chat_id)

    senders = {"a1": a1, "b": b, "c": c}
    per_sender = 6

    results = await asyncio.gather(
        *(burst(ws, chat_id, name, per_sender) for name, ws in senders.items())
    )
    answers = {r["messageId"]: r["seq"] for batch in results for r in batch}
    total = len(senders) * per_sender
    assert len(answers) == total
    assert sorted(answers.values()) == list(range(2, 2 + total))  # seq 1 was "created"

    own: dict[WsClient, set[str]] = {
        ws: {r["messageId"] for r in batch}
        for ws, batch in zip(senders.values(), results, strict=True)
    }
    own[a2] = set()  # Alice's other device gets her phone's messages too
    for ws, mine in own.items():
        received = [e["data"] for e in await ws.collect("message", total - len(mine))]
        seqs = [d["seq"] for d in received]
        assert all(x < y for x, y in itertools.pairwise(seqs)), seqs
        assert {d["messageId"] for d in received} == answers.keys() - mine
        for data in received:
            assert data["seq"] == answers[data["messageId"]]
    # Nothing twice, nothing more.
    for frames in await barrier_group(a1, [bob["user_id"], carol["user_id"]], [a1, a2, b, c]):
        assert messages_in(frames) == []
