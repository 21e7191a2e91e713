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
