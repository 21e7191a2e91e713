"""``pigeon chat`` against a live server.

Each command runs in a worker thread (it calls ``asyncio.run``) while the
server runs on the test's event loop. Prompts read from a pipe the test
writes to once it knows what to type (the code arrives in the SMS outbox).
"""

from __future__ import annotations

import asyncio
import io
import json
import queue
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import structlog
import typer.testing
from rich.console import Console
from typer.testing import CliRunner, Result

from pigeon.cli import main as cli
from pigeon.cli import terminal
from pigeon.client import (
    MessageDeletedEvent,
    MessageEditedEvent,
    MessageEvent,
    PigeonClient,
    ReactionEvent,
    ReceiptEvent,
    Session,
)
from tests.client.conftest import OpenDevice, Register
from tests.live import LiveServer
from tests.support import Outbox

PHONE = "+14155550177"


@pytest.fixture(autouse=True)
def narrow_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # Output piped to a file or another program is laid out for 80 columns.
    monkeypatch.setattr(terminal, "console", Console(width=80))


@pytest.fixture(autouse=True)
def server_logs_apart() -> Iterator[None]:
    # The server runs in the test's process and logs to sys.stdout, which typer's
    # runner swaps for its capture: two threads writing one captured stream lose
    # lines. Its log lines go to the process's own stderr instead.
    config = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.__stderr__))
    yield
    structlog.configure(**config)


@pytest.fixture(autouse=True)
def streaming_input(monkeypatch: pytest.MonkeyPatch) -> None:
    # Typer's runner only takes input given in advance; these tests type into a
    # pipe while the command runs (as a person at the terminal would).
    original = typer.testing.make_input_stream

    def make_input_stream(input: Any, charset: str) -> Any:
        return input if hasattr(input, "read") else original(input, charset)

    monkeypatch.setattr(typer.testing, "make_input_stream", make_input_stream)


@pytest.fixture
def session_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "pigeon" / "session.json"


class Pipe(io.RawIOBase):
    """A stdin the test types into while the command runs (a read waits for typing)."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: queue.Queue[bytes] = queue.Queue()
        self._pending = b""
        self._ended = False
        self.reader = io.BufferedReader(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending and not self._ended:
            try:
                self._pending = self._chunks.get(timeout=60)
            except queue.Empty:  # a test that forgot to type: end of input
                self._pending = b""
            self._ended = not self._pending
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def type(self, text: str) -> None:
        self._chunks.put(text.encode())

    def end(self) -> None:
        """End of input (Ctrl-D)."""
        self._chunks.put(b"")


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    stdin = Pipe()
    yield stdin
    stdin.end()


async def pigeon_chat(*args: str, stdin: IO[bytes] | None = None) -> Result:
    runner = CliRunner()
    stream: Any = stdin  # see streaming_input

    def invoke() -> Result:
        return runner.invoke(cli.app, ["chat", *args], input=stream)

    return await asyncio.to_thread(invoke)


async def code_for(outbox: Outbox, phone: str) -> str:
    async with asyncio.timeout(10):
        while True:
            try:
                return outbox.last_code(phone)
            except (AssertionError, ValueError):  # not sent (or not written out) yet
                await asyncio.sleep(0.05)


async def login(
    server: LiveServer, outbox: Outbox, session_file: Path, pipe: Pipe, phone: str = PHONE
) -> Result:
    running = asyncio.create_task(
        pigeon_chat(
            "login",
            "--server",
            server.http_url,
            "--phone",
            phone,
            "--session-file",
            str(session_file),
            stdin=pipe.reader,
        )
    )
    try:
        pipe.type(f"{await code_for(outbox, phone)}\n")
    finally:
        pipe.end()  # a prompt that is still waiting gives up
    result = await asyncio.wait_for(running, 30)
    assert result.exit_code == 0, result.output
    return result


def stored(session_file: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(session_file.read_text("utf-8"))
    return record


async def test_login_stores_the_session_readable_by_the_owner_only(
    server: LiveServer, outbox: Outbox, session_file: Path, pipe: Pipe, open_device: OpenDevice
) -> None:
    result = await login(server, outbox, session_file, pipe)
    assert "Code" in result.output
    mode = (await asyncio.to_thread(session_file.stat)).st_mode
    assert stat.S_IMODE(mode) == 0o600
    record = stored(session_file)
    assert record["server"] == server.http_url
    assert record["phone"] == PHONE
    assert f"Logged in as user {record['user_id']}" in result.output
    # The stored session works.
    device = await open_device(Session.from_dict(record))
    assert device.conn.user_id == record["user_id"]
    assert await device.conn.get_chats() == []


async def test_send_delivers_to_another_connection(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
) -> None:
    await login(server, outbox, session_file, pipe)
    alice_id = stored(session_file)["user_id"]
    bob = await open_device(await register())
    chat = await bob.conn.create_chat([alice_id])

    result = await pigeon_chat(
        "send", chat.chat_id, "hello from the terminal", "--session-file", str(session_file)
    )
    assert result.exit_code == 0, result.output
    assert "sent #1" in result.output
    message = await bob.next(MessageEvent)
    assert (message.text, message.sender_id, message.seq) == (
        "hello from the terminal",
        alice_id,
        1,
    )


async def test_new_and_list_show_the_chats_by_name_with_last_message_and_unread(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    sdk: PigeonClient,
    open_device: OpenDevice,
) -> None:
    await login(server, outbox, session_file, pipe)
    bob, carol = await register(), await register()
    await sdk.update_profile(bob, name="Bob")
    options = ("--session-file", str(session_file), "--no-download")

    direct = await pigeon_chat("new", "--with", bob.user_id, *options[:2])
    assert direct.exit_code == 0, direct.output
    assert direct.output.startswith("Created chat ")
    direct_id = direct.output.split()[-1]
    again = await pigeon_chat("new", "--with", bob.user_id, *options[:2])
    assert again.output.split() == ["Existing", "chat", direct_id]
    group = await pigeon_chat(
        "new", "--group", "Book club", "--member", bob.user_id, "-m", carol.user_id, *options[:2]
    )
    assert group.exit_code == 0, group.output
    group_id = group.output.split()[-1]
    sent = await pigeon_chat("send", direct_id, "from me", *options[:2])
    assert sent.exit_code == 0, sent.output
    bob_device = await open_device(bob)
    for text in ["one", "two"]:
        await bob_device.conn.send_message(direct_id, text)

    listed = await pigeon_chat("list", *options)
    assert listed.exit_code == 0, listed.output
    [direct_row] = [line for line in listed.output.splitlines() if direct_id in line]
    assert "Bob" in direct_row
    assert bob.user_id not in listed.output  # names, not ids
    assert "Bob: two" in direct_row
    assert re.search(r"│\s+2\s+│", direct_row), direct_row  # Bob's two, not my own message
    [group_row] = [line for line in listed.output.splitlines() if group_id in line]
    assert "Book club (group)" in group_row
    assert "you created the" in group_row  # the group ...
    assert re.search(r"│\s+0\s+│", group_row), group_row
    # The chat with the latest message comes first.
    assert listed.output.index(direct_id) < listed.output.index(group_id)


async def test_open_shows_messages_and_sends_typed_lines(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
    client: httpx.AsyncClient,
) -> None:
    await login(server, outbox, session_file, Pipe())
    alice_id = stored(session_file)["user_id"]
    bob_session = await register()
    headers = {"Authorization": f"Bearer {bob_session.access_token}"}
    assert (await client.patch("/v1/me", json={"name": "Bob"}, headers=headers)).is_success
    bob = await open_device(bob_session)
    chat = await bob.conn.create_chat([alice_id])
    await bob.conn.send_message(chat.chat_id, "are you there?")

    running = asyncio.create_task(
        pigeon_chat("open", chat.chat_id, "--session-file", str(session_file), stdin=pipe.reader)
    )
    try:
        read = await bob.next(ReceiptEvent, timeout=20)
        while read.type != "read":  # the delivered receipt comes first
            read = await bob.next(ReceiptEvent)
        assert read.up_to_seq == 1  # Alice's terminal showed the message

        pipe.type("yes, here\n")
        answer = await bob.next(MessageEvent)
        assert (answer.text, answer.sender_id) == ("yes, here", alice_id)
        await bob.conn.mark_read(chat.chat_id, answer.seq)
        await bob.conn.send_message(chat.chat_id, "great")
        while (read := await bob.next(ReceiptEvent)).type != "read" or read.up_to_seq < 3:
            pass  # Alice's terminal showed "great" (and everything before it)
        pipe.type("/quit\n")
    finally:
        pipe.end()
    result = await asyncio.wait_for(running, 30)

    assert result.exit_code == 0, result.output
    output = result.output
    assert "chat with Bob" in output
    assert "Bob: are you there?" in output
    assert "you: yes, here" in output
    assert "✓✓ read by Bob up to #2" in output
    assert "Bob: great" in output
    assert output.index("are you there?") < output.index("yes, here") < output.index("great")


async def test_commands_without_a_session_say_how_to_log_in(tmp_path: Path) -> None:
    result = await pigeon_chat("list", "--session-file", str(tmp_path / "missing.json"))
    assert result.exit_code == 1
    assert "pigeon chat login" in result.output


async def test_react_edit_and_delete_from_the_terminal(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
) -> None:
    await login(server, outbox, session_file, pipe)
    alice_id = stored(session_file)["user_id"]
    bob = await open_device(await register())
    chat = await bob.conn.create_chat([alice_id])
    theirs = await bob.conn.send_message(chat.chat_id, "coffee?")
    where = ("--session-file", str(session_file))

    reacted = await pigeon_chat("react", chat.chat_id, theirs.message_id, "☕", *where)
    assert reacted.exit_code == 0, reacted.output
    reaction = await bob.next(ReactionEvent)
    assert (reaction.message_id, reaction.user_id, reaction.emoji) == (
        theirs.message_id,
        alice_id,
        "☕",
    )
    not_one = await pigeon_chat("react", chat.chat_id, theirs.message_id, "ok", *where)
    assert not_one.exit_code != 0
    assert "A reaction is one emoji" in not_one.output
    not_hers = await pigeon_chat("edit", chat.chat_id, theirs.message_id, "tea?", *where)
    assert not_hers.exit_code != 0
    assert "No such message that you may change" in not_hers.output

    sent = await pigeon_chat("send", chat.chat_id, "at 10", *where)
    match = re.search(r"\(([0-9A-Z]{26})\)", sent.output)
    assert match, sent.output
    mine = match.group(1)
    assert (await bob.next(MessageEvent)).message_id == mine
    edited = await pigeon_chat("edit", chat.chat_id, mine, "at 11", *where)
    assert edited.exit_code == 0, edited.output
    assert (await bob.next(MessageEditedEvent)).text == "at 11"
    deleted = await pigeon_chat("delete", chat.chat_id, mine, *where)
    assert deleted.exit_code == 0, deleted.output
    assert "deleted for everyone" in deleted.output
    assert (await bob.next(MessageDeletedEvent)).message_id == mine


async def test_forward_from_the_terminal(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
) -> None:
    await login(server, outbox, session_file, pipe)
    alice_id = stored(session_file)["user_id"]
    bob = await open_device(await register())
    carol = await open_device(await register())
    from_bob = await bob.conn.create_chat([alice_id])
    to_carol = await carol.conn.create_chat([alice_id])
    theirs = await bob.conn.send_message(from_bob.chat_id, "the menu")
    where = ("--session-file", str(session_file))

    result = await pigeon_chat(
        "forward", from_bob.chat_id, theirs.message_id, to_carol.chat_id, *where
    )
    assert result.exit_code == 0, result.output
    assert "forwarded as #1" in result.output
    got = await carol.next(MessageEvent)
    assert (got.text, got.sender_id, got.forward_hops, got.forwarded_many_times) == (
        "the menu",
        alice_id,
        1,
        False,
    )
    missing = await pigeon_chat(
        "forward", from_bob.chat_id, "01JQ81NOSUCH", to_carol.chat_id, *where
    )
    assert missing.exit_code != 0
    assert "does not have that message" in missing.output
