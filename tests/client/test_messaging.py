"""The SDK against a live server: registration, chats, messages, receipts, order."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.client import (
    ApiError,
    CommandError,
    DrainedEvent,
    MessageEvent,
    PigeonClient,
    PresenceEvent,
    ReceiptEvent,
    Session,
    TypingEvent,
)
from tests.client.conftest import OpenDevice, Register
from tests.client.proxy import Proxy
from tests.support import Outbox


async def test_registration_through_the_sdk(sdk: PigeonClient, outbox: Outbox) -> None:
    sent = await sdk.request_code("+1 415 555 0100")
    assert sent.phone == "+14155550100"
    assert sent.expires_in > 0
    code = outbox.last_code(sent.phone)
    with pytest.raises(ApiError) as wrong:
        await sdk.verify(sent.phone, "000000" if code != "000000" else "111111", "laptop")
    assert wrong.value.status == 403
    assert wrong.value.code == "invalid_code"
    session = await sdk.verify(sent.phone, code, "laptop")
    assert session.user_id
    assert session.device_id
    assert session.access_token not in repr(session)
    refreshed = await sdk.refresh(session)
    assert refreshed.user_id == session.user_id
    assert refreshed.access_token != session.access_token


async def test_one_to_one_send_receive_and_receipts(
    register: Register, open_device: OpenDevice
) -> None:
    alice, bob = await open_device(await register()), await open_device(await register())
    chat = await alice.conn.create_chat([bob.user_id])
    assert chat.created
    again = await alice.conn.create_chat([bob.user_id])
    assert again.chat_id == chat.chat_id
    assert not again.created

    sent = await alice.conn.send_message(chat.chat_id, "hello Bob")
    assert sent.seq == 1
    assert not sent.duplicate
    message = await bob.next(MessageEvent)
    assert message.chat_id == chat.chat_id
    assert message.message_id == sent.message_id
    assert message.text == "hello Bob"
    assert message.sender_id == alice.user_id
    assert message.kind == "text"

    delivered = await alice.next(ReceiptEvent)
    assert (delivered.type, delivered.user_id, delivered.up_to_seq) == ("delivered", bob.user_id, 1)

    assert await bob.conn.mark_read(chat.chat_id, 99) == 1  # clamped to the last seq
    read = await alice.next(ReceiptEvent)
    assert (read.type, read.user_id, read.up_to_seq) == ("read", bob.user_id, 1)

    reply = await bob.conn.send_message(chat.chat_id, "hi Alice", reply_to=sent.message_id)
    answer = await alice.next(MessageEvent)
    assert (answer.seq, answer.reply_to, answer.text) == (2, sent.message_id, "hi Alice")
    assert answer.message_id == reply.message_id

    [summary] = await bob.conn.get_chats()
    assert (summary.chat_id, summary.kind, summary.last_seq, summary.read_seq) == (
        chat.chat_id,
        "direct",
        2,
        1,
    )
    details = await alice.conn.get_chat(chat.chat_id)
    assert {m.user_id for m in details.members} == {alice.user_id, bob.user_id}


async def test_group_of_three(register: Register, open_device: OpenDevice) -> None:
    alice, bob, carol = [await open_device(await register()) for _ in range(3)]
    group = await alice.conn.create_chat([bob.user_id, carol.user_id], name="Trip")
    for member in (alice, bob, carol):
        created = await member.next(MessageEvent)
        assert created.kind == "system"
        assert created.system is not None
        assert created.system["action"] == "created"

    sent = await alice.conn.send_message(group.chat_id, "who brings the map?")
    for member in (bob, carol):
        message = await member.next(MessageEvent)
        assert (message.message_id, message.seq) == (sent.message_id, sent.seq)
    receipts = {(await alice.next(ReceiptEvent)).user_id for _ in range(2)}
    assert receipts == {bob.user_id, carol.user_id}

    await carol.conn.send_message(group.chat_id, "me")
    assert [m.text for m in await alice.messages(1)] == ["me"]
    assert [m.text for m in await bob.messages(1)] == ["me"]

    await alice.conn.rename(group.chat_id, "Road trip")
    await alice.conn.set_role(group.chat_id, bob.user_id, "admin")
    await carol.conn.leave(group.chat_id)
    actions = [(m.system or {}).get("action") for m in await bob.messages(3)]
    assert actions == ["renamed", "role", "left"]
    details = await bob.conn.get_chat(group.chat_id)
    assert (details.name, details.kind) == ("Road trip", "group")
    roles = {m.user_id: m.role for m in details.members}
    assert roles == {alice.user_id: "admin", bob.user_id: "admin"}

    with pytest.raises(CommandError) as error:
        await carol.conn.send_message(group.chat_id, "still here?")
    assert error.value.code == "chat_not_found"


async def test_offline_device_catches_up_in_order(
    register: Register, open_device: OpenDevice
) -> None:
    alice = await open_device(await register())
    bob_session, carol_session = await register(), await register()
    direct = await alice.conn.create_chat([bob_session.user_id])
    group = await alice.conn.create_chat([bob_session.user_id, carol_session.user_id], "G")
    for n in range(1, 6):
        await alice.conn.send_message(direct.chat_id, f"direct {n}")
        await alice.conn.send_message(group.chat_id, f"group {n}")

    bob = await open_device(bob_session)
    await bob.next(DrainedEvent)
    messages = bob.received_messages()
    assert [m.text for m in messages if m.chat_id == direct.chat_id] == [
        f"direct {n}" for n in range(1, 6)
    ]
    in_group = [m for m in messages if m.chat_id == group.chat_id]
    assert [m.kind for m in in_group] == ["system"] + ["text"] * 5  # "created" comes first
    assert [m.text for m in in_group[1:]] == [f"group {n}" for n in range(1, 6)]
    inbox = [m.inbox_seq for m in messages]
    assert inbox == sorted(inbox)
    # Read back from the database, each message keeps its own chat's seq.
    assert [m.seq for m in messages if m.chat_id == direct.chat_id] == [1, 2, 3, 4, 5]
    assert [m.seq for m in in_group] == [1, 2, 3, 4, 5, 6]

    # Bob's acks reach the server: Alice hears that everything was delivered.
    delivered: dict[str, int] = {}
    while delivered != {direct.chat_id: 5, group.chat_id: 6}:
        receipt = await alice.next(ReceiptEvent)
        assert receipt.user_id == bob.user_id
        delivered[receipt.chat_id] = max(delivered.get(receipt.chat_id, 0), receipt.up_to_seq)


async def test_other_devices_of_the_sender_get_its_messages(
    register: Register, open_device: OpenDevice
) -> None:
    phone = "+14155550150"
    laptop = await open_device(await register(phone, "laptop"))
    tablet = await open_device(await register(phone, "tablet"))
    bob = await open_device(await register())
    chat = await laptop.conn.create_chat([bob.user_id])
    sent = await laptop.conn.send_message(chat.chat_id, "from the laptop")
    copy = await tablet.next(MessageEvent)
    assert (copy.message_id, copy.sender_device_id) == (sent.message_id, laptop.session.device_id)
    assert (await bob.next(MessageEvent)).message_id == sent.message_id


async def test_typing_and_presence(register: Register, open_device: OpenDevice) -> None:
    alice = await open_device(await register())
    bob_session = await register()
    chat = await alice.conn.create_chat([bob_session.user_id])
    bob = await open_device(bob_session)
    online = await alice.next(PresenceEvent)
    assert (online.user_id, online.state) == (bob.user_id, "online")

    await bob.conn.typing(chat.chat_id)
    typing = await alice.next(TypingEvent)
    assert (typing.chat_id, typing.user_id, typing.state) == (
        chat.chat_id,
        bob.user_id,
        "composing",
    )
    await bob.conn.typing(chat.chat_id, composing=False)
    assert (await alice.next(TypingEvent)).state == "paused"

    [presence] = await alice.conn.get_presence([bob.user_id])
    assert presence.state == "online"
    await bob.conn.set_presence("offline")
    offline = await alice.next(PresenceEvent)
    assert offline.state == "offline"
    assert offline.last_seen is not None
    # "Offline" is what others are told; Bob's connection still gets his messages.
    sent = await alice.conn.send_message(chat.chat_id, "still there?")
    assert (await bob.next(MessageEvent)).message_id == sent.message_id


async def test_ping_measures_the_round_trip(
    register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    alice = await open_device(await register(), via_proxy=True)
    quick = await alice.conn.ping()
    assert 0 < quick < 1  # 127.0.0.1

    proxy.hold("down")  # the pong waits on the link
    pinging = asyncio.create_task(alice.conn.ping())
    await asyncio.sleep(0.3)  # the delay on the link is the point
    proxy.release("down")
    slow = await asyncio.wait_for(pinging, 5)
    assert slow >= 0.3
    assert slow > quick


async def test_command_errors_are_typed(register: Register, open_device: OpenDevice) -> None:
    alice = await open_device(await register())
    with pytest.raises(CommandError) as unknown_chat:
        await alice.conn.send_message("nosuchchat", "hello")
    assert unknown_chat.value.code == "chat_not_found"
    with pytest.raises(CommandError) as unknown_user:
        await alice.conn.create_chat(["nosuchuser"])
    assert unknown_user.value.code == "user_not_found"
    bob = await register()
    chat = await alice.conn.create_chat([bob.user_id])
    with pytest.raises(CommandError) as empty:
        await alice.conn.send_message(chat.chat_id, "   ")
    assert empty.value.code == "empty_message"
    with pytest.raises(CommandError) as not_group:
        await alice.conn.add_member(chat.chat_id, bob.user_id)
    assert not_group.value.code == "not_a_group"


async def test_expired_access_token_is_refreshed_on_connect(
    sdk: PigeonClient, register: Register, open_device: OpenDevice
) -> None:
    original = await register()
    rotated = await sdk.refresh(original)
    # The first access token no longer works; the refresh token of the rotation does.
    stale = Session(
        original.user_id, original.device_id, original.access_token, rotated.refresh_token
    )
    stored: list[Session] = []
    device = await open_device(stale, on_session=stored.append)
    [fresh] = stored
    assert fresh.access_token not in (original.access_token, rotated.access_token)
    assert device.conn.session == fresh
    assert device.conn.device_id == original.device_id
    assert await device.conn.get_chats() == []
