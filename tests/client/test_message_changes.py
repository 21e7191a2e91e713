"""The SDK's reactions, edits and deletes against a live server, on both engines."""

from __future__ import annotations

import pytest

from pigeon.client import (
    CommandError,
    MessageDeletedEvent,
    MessageEditedEvent,
    MessageEvent,
    ReactionEvent,
)
from tests.client.conftest import OpenDevice, Register


async def test_react_edit_and_delete_through_the_sdk(
    register: Register, open_device: OpenDevice
) -> None:
    alice, bob = await open_device(await register()), await open_device(await register())
    chat = await alice.conn.create_chat([bob.user_id])
    sent = await alice.conn.send_message(chat.chat_id, "dinner at 7")
    assert (await bob.next(MessageEvent)).message_id == sent.message_id

    at = await bob.conn.react(chat.chat_id, sent.message_id, "🎉")
    reaction = await alice.next(ReactionEvent)
    assert (reaction.message_id, reaction.user_id, reaction.emoji, reaction.at) == (
        sent.message_id,
        bob.user_id,
        "🎉",
        at,
    )
    await alice.conn.edit_message(chat.chat_id, sent.message_id, "dinner at 8")
    edited = await bob.next(MessageEditedEvent)
    assert (edited.message_id, edited.user_id, edited.text) == (
        sent.message_id,
        alice.user_id,
        "dinner at 8",
    )
    await alice.conn.delete_message(chat.chat_id, sent.message_id)
    deleted = await bob.next(MessageDeletedEvent)
    assert (deleted.message_id, deleted.user_id) == (sent.message_id, alice.user_id)

    with pytest.raises(CommandError) as refused:
        await bob.conn.react(chat.chat_id, sent.message_id, "👍")
    assert refused.value.code == "message_not_found"
    with pytest.raises(CommandError) as not_one:
        await bob.conn.react(chat.chat_id, sent.message_id, "👍👍")
    assert not_one.value.code == "invalid_reaction"


async def test_forward_and_quoted_reply_through_the_sdk(
    register: Register, open_device: OpenDevice
) -> None:
    alice, bob = await open_device(await register()), await open_device(await register())
    carol = await open_device(await register())
    with_bob = await alice.conn.create_chat([bob.user_id])
    with_carol = await bob.conn.create_chat([carol.user_id])
    sent = await alice.conn.send_message(with_bob.chat_id, "lunch at noon? the usual")
    original = await bob.next(MessageEvent)
    assert (original.forward_hops, original.quote_excerpt) == (0, None)

    await bob.conn.forward(with_carol.chat_id, original)
    forwarded = await carol.next(MessageEvent)
    assert (forwarded.text, forwarded.forward_hops, forwarded.forwarded_many_times) == (
        original.text,
        1,
        False,
    )
    await bob.conn.send_message(
        with_bob.chat_id, "yes", reply_to=sent.message_id, reply_excerpt="lunch at noon?"
    )
    reply = await alice.next(MessageEvent)
    assert (reply.reply_to, reply.quote_sender_id, reply.quote_excerpt) == (
        sent.message_id,
        alice.user_id,
        "lunch at noon?",
    )
