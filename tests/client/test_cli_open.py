"""``pigeon chat open``: nothing received is lost from the person's point of view, receipts
mean what people expect, and a connection taken over does not drop typed lines.

The CLI's output is read once the command has finished; to know that it has
processed something meanwhile, the tests look at its local store (a second
reader of the SQLite file), the way another program on the machine could.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from pigeon.cli.chat_session import store_path
from pigeon.client import LocalStore, MessageEvent, PigeonClient, ReceiptEvent
from tests.client.conftest import Device, OpenDevice, Register
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


def created_id(output: str) -> str:
    match = re.search(r"Created chat (\S+)", output)
    assert match is not None, output
    return match.group(1)


async def until_stored(
    session_file: Path, check: Callable[[LocalStore], Awaitable[bool]], timeout: float = 20
) -> None:
    """Wait (bounded) until the CLI's local store satisfies ``check``."""
    path = store_path(session_file, stored(session_file)["device_id"])
    async with asyncio.timeout(timeout), LocalStore(path) as store:
        while True:
            if await check(store):
                return
            await asyncio.sleep(0.05)


def has_text(chat_id: str, text: str) -> Callable[[LocalStore], Awaitable[bool]]:
    async def check(store: LocalStore) -> bool:
        return any(m.text == text for m in await store.history(chat_id))

    return check


def marks(
    chat_id: str, user_id: str, read: int, delivered: int = 0
) -> Callable[[LocalStore], Awaitable[bool]]:
    async def check(store: LocalStore) -> bool:
        mark = (await store.receipts(chat_id)).get(user_id)
        return mark is not None and mark.read_seq >= read and mark.delivered_seq >= delivered

    return check


async def test_messages_of_other_chats_are_shown_in_full_and_kept_for_their_chat(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
    sdk: PigeonClient,
    tmp_path: Path,
) -> None:
    await login(server, outbox, session_file, Pipe())
    alice_id = stored(session_file)["user_id"]
    bob = await open_device(await register())
    carol_session = await register()
    await sdk.update_profile(carol_session, name="Carol")
    carol = await open_device(carol_session)
    direct = await bob.conn.create_chat([alice_id])
    options = ("--session-file", str(session_file), "--download-dir", str(tmp_path / "dl"))

    running = asyncio.create_task(pigeon_chat("open", direct.chat_id, *options, stdin=pipe.reader))
    try:
        # While Alice looks at her chat with Bob, Carol starts a group and writes in it.
        group = await carol.conn.create_chat([alice_id, bob.user_id], name="Trip")
        await carol.conn.send_message(group.chat_id, "first words in the group")
        photo = tmp_path / "beach.txt"
        await asyncio.to_thread(photo.write_text, "sand and sea\n")
        file = await sdk.upload_file(carol_session, photo)
        caption = await carol.conn.send_message(group.chat_id, "the caption", attachments=[file])
        # Alice's terminal acked it (so it had shown it and saved its file): delivered.
        while not (
            (receipt := await carol.next(ReceiptEvent)).user_id == alice_id
            and receipt.type == "delivered"
            and receipt.up_to_seq >= caption.seq
        ):
            pass
        pipe.type("/quit\n")
    finally:
        pipe.end()
    result = await asyncio.wait_for(running, 30)
    assert result.exit_code == 0, result.output
    assert "in Trip: Carol: first words in the group" in result.output
    assert "in Trip: Carol: the caption [1 file(s)]" in result.output
    assert f"saved to {tmp_path / 'dl' / 'beach.txt'}" in result.output

    # Opened later, the group shows what came while another chat was open.
    later = Pipe()
    later.type("/quit\n")
    opened = await pigeon_chat("open", group.chat_id, *options, stdin=later.reader)
    assert opened.exit_code == 0, opened.output
    output = opened.output
    assert "Carol created the group 'Trip'" in output
    assert "Carol: first words in the group" in output
    assert "Carol: the caption" in output
    assert "[beach.txt, text/plain" in output
    first, caption = output.index("first words"), output.index("the caption")
    assert output.index("created the group") < first < caption


async def test_group_receipts_count_only_when_every_member_has_them(
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
    bob_session, carol_session = await register(), await register()
    await sdk.update_profile(bob_session, name="Bob")
    await sdk.update_profile(carol_session, name="Carol")
    options = ("--session-file", str(session_file), "--no-download")
    created = await pigeon_chat(
        "new",
        "--group",
        "Trip",
        "-m",
        bob_session.user_id,
        "-m",
        carol_session.user_id,
        *options[:2],
    )
    group_id = created_id(created.output)
    sent = await pigeon_chat("send", group_id, "hi all", *options[:2])
    assert "sent #2" in sent.output

    # Bob's and Carol's devices receive it (delivered); Bob reads it, Carol not yet.
    bob = await open_device(bob_session)
    carol = await open_device(carol_session)
    await bob.messages(2)
    await carol.messages(2)
    await bob.conn.mark_read(group_id, 2)

    running = asyncio.create_task(pigeon_chat("open", group_id, *options, stdin=pipe.reader))
    try:
        await until_stored(session_file, marks(group_id, bob.user_id, read=2, delivered=2))
        await until_stored(session_file, marks(group_id, carol.user_id, read=0, delivered=2))
        # Alice's terminal handles events in order: once it showed Bob's next message,
        # it has handled every receipt before it.
        await shown_to(alice_id, bob, group_id, "ping 1")
        pipe.type("/info 2\n")
        pipe.type("noted\n")  # sent after /info 2 was answered: lines are handled in order
        assert (await bob.next(MessageEvent)).text == "noted"
        await carol.conn.mark_read(group_id, 2)
        await shown_to(alice_id, bob, group_id, "ping 2")
        pipe.type("/info 2\n")
        pipe.type("/quit\n")
    finally:
        pipe.end()
    result = await asyncio.wait_for(running, 30)
    assert result.exit_code == 0, result.output
    output = result.output

    delivered = output.index("✓✓ delivered to everyone up to #2")
    ping = output.index("Bob: ping 1")
    first_info = output.index("#2 'hi all':")
    read = output.index("✓✓ read by everyone up to #2")
    second_info = output.index("#2 'hi all':", read)
    assert delivered < ping < first_info < read < second_info
    assert "read by" not in output[:ping]  # Bob alone reading it is not "read"
    assert output.count("read by everyone") == 1
    assert output.count("delivered to everyone up to #2") == 1  # and never again once read
    info = output[first_info : output.index("you: noted")]
    assert "Bob: read" in info
    assert "Carol: delivered" in info
    assert "Carol: read" in output[second_info:]


async def shown_to(alice_id: str, sender: Device, chat_id: str, text: str) -> None:
    """``sender`` writes ``text``; wait until Alice's terminal showed it (it marks it read)."""
    sent = await sender.conn.send_message(chat_id, text)
    while not (
        (receipt := await sender.next(ReceiptEvent)).type == "read"
        and receipt.user_id == alice_id
        and receipt.up_to_seq >= sent.seq
    ):
        pass


async def test_a_line_typed_after_the_connection_was_taken_over_stays_in_pigeon(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
) -> None:
    await login(server, outbox, session_file, Pipe())
    alice_id = stored(session_file)["user_id"]
    bob = await open_device(await register())
    chat = await bob.conn.create_chat([alice_id])
    await bob.conn.send_message(chat.chat_id, "hello")
    options = ("--session-file", str(session_file), "--no-download")

    running = asyncio.create_task(pigeon_chat("open", chat.chat_id, *options, stdin=pipe.reader))
    try:
        await until_stored(session_file, has_text(chat.chat_id, "hello"))
        # Another command of the same device, in another process, takes the connection over.
        # (Not through typer's runner: two runners in one process swap one sys.stdout.)
        other = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "pigeon", "chat", "send", chat.chat_id, "from another command"),
            *options[:2],
            stdout=asyncio.subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(other.wait(), 30) == 0
        pipe.type("is this sent?\n")
        pipe.type("/reconnect\n")
        pipe.type("after taking it back\n")
        texts = [m.text for m in await bob.messages(2)]
        pipe.type("/quit\n")
    finally:
        pipe.end()
    result = await asyncio.wait_for(running, 30)

    assert result.exit_code == 0, result.output
    assert texts == ["from another command", "after taking it back"]
    assert "took over the connection" in result.output
    assert "not sent" in result.output
    assert all(isinstance(m, MessageEvent) for m in bob.received_messages())


async def test_open_shows_reactions_edits_deletes_and_the_disappearing_timer(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
    tmp_path: Path,
) -> None:
    await login(server, outbox, session_file, Pipe())
    alice_id = stored(session_file)["user_id"]
    bob = await open_device(await register())
    chat = await bob.conn.create_chat([alice_id])
    options = ("--session-file", str(session_file), "--download-dir", str(tmp_path / "dl"))

    running = asyncio.create_task(pigeon_chat("open", chat.chat_id, *options, stdin=pipe.reader))
    try:
        sent = await bob.conn.send_message(chat.chat_id, "see you at 8")
        await bob.conn.edit_message(chat.chat_id, sent.message_id, "see you at 9")
        await bob.conn.react(chat.chat_id, sent.message_id, "👍")
        await bob.conn.set_disappearing(chat.chat_id, 604_800)
        await bob.conn.delete_message(chat.chat_id, sent.message_id)
        marker = await bob.conn.send_message(chat.chat_id, "marker")
        # Alice's terminal acked the marker: it showed everything before it.
        while not (
            (receipt := await bob.next(ReceiptEvent)).user_id == alice_id
            and receipt.type == "delivered"
            and receipt.up_to_seq >= marker.seq
        ):
            pass
        pipe.type("/quit\n")
    finally:
        pipe.end()
    result = await asyncio.wait_for(running, 30)
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", " ")
    assert f"edited {sent.message_id}: see you at 9" in output
    assert f"reacted 👍 to {sent.message_id}" in output
    assert "made new messages disappear after 7 days" in output
    assert f"deleted {sent.message_id} for everyone" in output
