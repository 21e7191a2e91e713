"""Contacts in the SDK and ``pigeon chat``: a chat starts from a phone number, and contacts
show by name."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pigeon.client import MessageEvent, PigeonClient
from tests.client.conftest import OpenDevice, Register
from tests.client.test_cli_chat import (  # noqa: F401 (fixtures)
    Pipe,
    login,
    narrow_console,
    pigeon_chat,
    server_logs_apart,
    stored,
    streaming_input,
)
from tests.client.test_cli_chat import pipe as pipe  # a fixture
from tests.client.test_cli_chat import session_file as session_file  # a fixture
from tests.live import LiveServer
from tests.support import Outbox

BOB = "+14155550188"


async def test_sdk_finds_users_by_number_and_lists_contacts(
    sdk: PigeonClient, register: Register
) -> None:
    alice = await register()
    bob = await register(BOB)
    await sdk.update_profile(bob, name="Bob", about="at work")

    found = await sdk.lookup_contacts(alice, ["(415) 555-0188", "+1 415 555 0177", "junk"])
    assert found.skipped == 1
    assert [(m.input, m.contact.user_id, m.contact.name) for m in found.matches] == [
        ("(415) 555-0188", bob.user_id, "Bob")
    ]
    assert [c.phone for c in await sdk.list_contacts(alice)] == [BOB]
    assert await sdk.find_user(alice, "+1 415 555 0177") is None


async def test_open_with_a_phone_number_starts_the_chat_with_that_person(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
    sdk: PigeonClient,
) -> None:
    await login(server, outbox, session_file, Pipe())
    alice_id = stored(session_file)["user_id"]
    bob_session = await register(BOB)
    await sdk.update_profile(bob_session, name="Bob")
    bob = await open_device(bob_session)

    running = asyncio.create_task(
        pigeon_chat(
            "open", "+1 415 555 0188", "--session-file", str(session_file), stdin=pipe.reader
        )
    )
    try:
        pipe.type("hello Bob\n")
        message = await bob.next(MessageEvent, timeout=20)
        assert (message.text, message.sender_id) == ("hello Bob", alice_id)
        pipe.type("/quit\n")
    finally:
        pipe.end()
    result = await asyncio.wait_for(running, 30)
    assert result.exit_code == 0, result.output
    assert "Chat with Bob (+14155550188)" in result.output
    assert "you: hello Bob" in result.output

    # Bob is now Alice's contact, shown by name.
    listed = await pigeon_chat("contacts", "--session-file", str(session_file))
    assert listed.exit_code == 0, listed.output
    assert "Bob" in listed.output
    assert BOB in listed.output

    nobody = await pigeon_chat("open", "+14155550177", "--session-file", str(session_file))
    assert nobody.exit_code == 1
    assert "Nobody on this server has the number +14155550177." in nobody.output
