"""The SDK's LocalStore: nothing acked that is not stored, each message shown once.

The kill tests run a client in a process of its own (tests/client/store_process.py)
and end it with SIGKILL at a chosen point: between receiving a message and
storing it, or between storing it and handing it out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from pigeon.client import (
    LocalStore,
    MessageEvent,
    PigeonClient,
    ReceiptEvent,
    Session,
    StoreError,
)
from tests.client.conftest import Device, OpenDevice, Register
from tests.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT = 30.0


async def test_a_message_is_stored_before_the_application_gets_it(
    register: Register, open_device: OpenDevice, tmp_path: Path
) -> None:
    alice_session = await register()
    bob = await open_device(await register())
    async with LocalStore(tmp_path / "alice.sqlite3") as store:
        alice = await open_device(alice_session, read=False, store=store)
        chat = await bob.conn.create_chat([alice.user_id])
        await bob.conn.send_message(chat.chat_id, "hello Alice")

        events = alice.conn.events()
        message = await anext(events)
        while not isinstance(message, MessageEvent):
            message = await anext(events)
        # Handed out, not acked yet (that happens when the next event is asked for),
        # and already in the store.
        [kept] = await store.history(chat.chat_id)
        assert (kept.message_id, kept.text, kept.sender_id) == (
            message.message_id,
            "hello Alice",
            bob.user_id,
        )
        await alice.conn.send_message(chat.chat_id, "hi Bob")
        await bob.next(MessageEvent)
        await bob.conn.mark_read(chat.chat_id, 2)
        receipt = await anext(events)
        while not (isinstance(receipt, ReceiptEvent) and receipt.type == "read"):
            receipt = await anext(events)
        receipts = await store.receipts(chat.chat_id)
        assert receipts[bob.user_id].read_seq == 2
        assert receipts[bob.user_id].delivered_seq == 2  # read implies delivered
        assert [m.text for m in await store.history(chat.chat_id)] == ["hello Alice", "hi Bob"]
        mode = (await asyncio.to_thread(os.stat, store.path)).st_mode
        assert stat.S_IMODE(mode) == 0o600  # it holds message text


async def test_unread_counts_only_others_messages_after_the_read_mark(
    register: Register, open_device: OpenDevice, tmp_path: Path
) -> None:
    alice_session = await register()
    bob = await open_device(await register())
    carol = await open_device(await register())
    async with LocalStore(tmp_path / "alice.sqlite3") as store:
        alice = await open_device(alice_session, store=store)
        group = await alice.conn.create_chat([bob.user_id, carol.user_id], name="Trip")  # seq 1
        await alice.conn.send_message(group.chat_id, "mine 1")
        await alice.conn.send_message(group.chat_id, "mine 2")
        for text in ["from Bob 1", "from Bob 2", "from Bob 3"]:
            await bob.conn.send_message(group.chat_id, text)
        texts = [m.text for m in await alice.messages(4)]  # the system message, then Bob's
        assert texts == ["", "from Bob 1", "from Bob 2", "from Bob 3"]

        [summary] = await alice.conn.get_chats()
        assert (summary.last_seq, summary.read_seq) == (6, 0)
        assert summary.unread == 3  # not 6: neither her own messages nor the system one
        await alice.conn.mark_read(group.chat_id, 5)
        [summary] = await alice.conn.get_chats()
        assert summary.unread == 1
        last = (await store.last_messages())[group.chat_id]
        assert (last.seq, last.text) == (6, "from Bob 3")

        [without_store] = await carol.conn.get_chats()
        assert without_store.unread is None  # unknown: the SDK has no messages to count


async def test_a_store_holds_one_devices_messages(
    register: Register, sdk: PigeonClient, tmp_path: Path
) -> None:
    first, second = await register(), await register()
    async with LocalStore(tmp_path / "store.sqlite3") as store:
        async with sdk.connect(first, store=store):
            pass
        with pytest.raises(StoreError) as refused:
            await sdk.connect(second, store=store).open()
        assert refused.value.code == "store_mismatch"


# -- killed with SIGKILL -------------------------------------------------------------------


class ClientProcess:
    """tests/client/store_process.py, run until it prints ``until`` or says where it waits."""

    def __init__(self, server: LiveServer, session_file: Path, store: Path) -> None:
        self.args = [str(server.http_url), str(session_file), str(store)]

    async def run(self, pause: str, until: str = "") -> list[str]:
        """Lines printed; with a pause, the process is killed (SIGKILL) where it waits."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.client.store_process",
            *self.args,
            pause,
            until,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(PROCESS_TIMEOUT):
                while line := (await process.stdout.readline()).decode():
                    lines.append(line.rstrip("\n"))
                    if pause != "none" and lines[-1] in ("storing", "stored"):
                        process.send_signal(signal.SIGKILL)
                        break
                assert await process.wait() in (0, -signal.SIGKILL), lines
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        return lines


@pytest.fixture
async def alice_process(
    server: LiveServer, register: Register, tmp_path: Path
) -> tuple[Session, ClientProcess]:
    session = await register()
    session_file = tmp_path / "alice.json"
    await asyncio.to_thread(session_file.write_text, json.dumps(session.to_dict()))
    return session, ClientProcess(server, session_file, tmp_path / "alice.sqlite3")


async def first_message_to(
    alice: Session, register: Register, open_device: OpenDevice
) -> tuple[Device, str]:
    """Bob, and the 1:1 chat in which he sent Alice "the first message"."""
    bob = await open_device(await register())
    chat = await bob.conn.create_chat([alice.user_id])
    await bob.conn.send_message(chat.chat_id, "the first message")
    return bob, chat.chat_id


async def stored_texts(path: Path, chat_id: str, session: Session) -> list[str]:
    async with LocalStore(path) as store:
        await store.bind(session.user_id, session.device_id)
        return [message.text for message in await store.history(chat_id)]


async def test_killed_between_receiving_and_storing_the_message_comes_again_once(
    alice_process: tuple[Session, ClientProcess], register: Register, open_device: OpenDevice
) -> None:
    alice, process = alice_process
    bob, chat_id = await first_message_to(alice, register, open_device)

    assert await process.run("before-store") == ["storing"]  # received, then SIGKILL
    assert await stored_texts(Path(process.args[2]), chat_id, alice) == []

    await bob.conn.send_message(chat_id, "marker")
    shown = await process.run("none", until="marker")
    assert shown == ["shown the first message", "shown marker"]
    assert await stored_texts(Path(process.args[2]), chat_id, alice) == [
        "the first message",
        "marker",
    ]


async def test_killed_after_storing_before_the_application_had_it_comes_again_once(
    alice_process: tuple[Session, ClientProcess], register: Register, open_device: OpenDevice
) -> None:
    alice, process = alice_process
    bob, chat_id = await first_message_to(alice, register, open_device)

    assert await process.run("after-store") == ["stored"]  # stored, not handed out: SIGKILL
    assert await stored_texts(Path(process.args[2]), chat_id, alice) == ["the first message"]

    await bob.conn.send_message(chat_id, "marker")
    assert await process.run("none", until="marker") == ["shown the first message", "shown marker"]
    # Both were handed out and acked: the next run gets only what is new.
    await bob.conn.send_message(chat_id, "second marker")
    assert await process.run("none", until="second marker") == ["shown second marker"]
    assert await stored_texts(Path(process.args[2]), chat_id, alice) == [
        "the first message",
        "marker",
        "second marker",
    ]


async def test_a_message_the_application_finished_with_is_not_handed_out_again(
    alice_process: tuple[Session, ClientProcess], register: Register, open_device: OpenDevice
) -> None:
    """As when a process finished with a message and its ack was lost: the server sends
    the message again, and the store drops it (by message id)."""
    alice, process = alice_process
    bob, chat_id = await first_message_to(alice, register, open_device)
    assert await process.run("after-store") == ["stored"]
    async with LocalStore(process.args[2]) as store:
        await store.bind(alice.user_id, alice.device_id)
        [first] = await store.history(chat_id)
        await store.mark_handled([(chat_id, first.message_id)])

    await bob.conn.send_message(chat_id, "marker")
    assert await process.run("none", until="marker") == ["shown marker"]
