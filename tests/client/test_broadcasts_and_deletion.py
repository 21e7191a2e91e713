"""Broadcast lists and account deletion through the SDK, against the live server."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from pigeon.bootstrap import Container
from pigeon.client import AuthenticationError, MessageEvent, PigeonClient
from pigeon.storage.schema import contacts
from tests.client.conftest import OpenDevice, Register
from tests.support import Outbox


async def test_a_broadcast_through_the_sdk_reaches_a_recipient_with_the_sender_as_contact(
    sdk: PigeonClient, register: Register, open_device: OpenDevice, container: Container
) -> None:
    alice, bob, carol = await register(), await register(), await register()
    async with container.engine.begin() as conn:
        await conn.execute(
            contacts.insert(),
            [{"owner_id": bob.user_id, "contact_id": alice.user_id, "added_at": datetime.now(UTC)}],
        )
    made = await sdk.create_broadcast_list(alice, [bob.user_id, carol.user_id], "friends")
    assert [x.list_id for x in await sdk.broadcast_lists(alice)] == [made.list_id]
    sender, receiver = await open_device(alice), await open_device(bob)

    sent = await sender.conn.send_broadcast(made.list_id, "hello all")
    assert sent.skipped == 1  # carol does not have alice
    [copy] = sent.messages
    [event] = await receiver.messages_until(copy.message_id)
    assert isinstance(event, MessageEvent)
    assert (event.chat_id, event.text) == (copy.chat_id, "hello all")

    await sdk.delete_broadcast_list(alice, made.list_id)
    assert await sdk.broadcast_lists(alice) == []


async def test_deleting_the_account_through_the_sdk_signs_every_device_out(
    sdk: PigeonClient, register: Register, outbox: Outbox
) -> None:
    alice = await register("+14155559001")
    laptop = await register("+14155559001", device="phone")
    await sdk.request_account_deletion(alice)
    [text] = [m["body"] for m in outbox.messages() if m["template"] == "deletion_code"]
    code = re.search(r"\b(\d{6})\b", text)
    assert code
    await sdk.delete_account(alice, code.group(1))
    for session in (alice, laptop):
        with pytest.raises(AuthenticationError):
            await sdk.broadcast_lists(session)
