"""``kill -9`` between an ack and its lazy commit: the message comes again, and is shown once.

Acks are committed lazily (``PIGEON_ACK_COMMIT_DELAY_MS``): the server
answers an ack at once and deletes the queue entries with the next batch,
or alone once the delay has passed. A crash in that window loses the
delete, never a message: the entries are still queued, the server sends
them again after the restart (at least once), and the SDK's local store
recognises what it already has (shown once). The delay is made long here
(10 s) so that the kill falls inside the window by construction.

The recipient is the SDK with a ``LocalStore``, through a proxy that keeps
what the server sent, so the redelivery is seen on the wire as well as
absorbed in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pigeon.client import (
    Connection,
    LocalStore,
    MessageEvent,
    PigeonClient,
    ReceiptEvent,
    ReconnectPolicy,
    Session,
    websocket_url,
)
from tests.client.proxy import Proxy
from tests.faults.support import ServerProcess, fresh_database
from tests.support import Outbox, eventually

ACK_DELAY_MS = 10_000  # the window the kill falls into (the setting's maximum)
# The SDK reconnects on its own while the server restarts (a second or two).
PATIENT = ReconnectPolicy(initial_delay=0.05, max_delay=0.25, max_attempts=400)


async def sign_up(sdk: PigeonClient, outbox: Outbox, phone: str) -> Session:
    sent = await sdk.request_code(phone)
    return await sdk.verify(sent.phone, outbox.last_code(sent.phone), "phone")


@contextlib.asynccontextmanager
async def connected(url: str, session: Session, **options: object) -> AsyncIterator[Connection]:
    conn = Connection(url, session, reconnect=PATIENT, request_timeout=10.0, **options)  # type: ignore[arg-type]
    await conn.open()
    try:
        yield conn
    finally:
        await conn.close()


async def next_message(events: AsyncIterator[object], timeout: float = 30) -> MessageEvent:
    async with asyncio.timeout(timeout):
        async for event in events:
            if isinstance(event, MessageEvent):
                return event
    raise AssertionError("the events ended")


async def next_receipt(conn: Connection, kind: str, up_to_seq: int) -> ReceiptEvent:
    """The first ``kind`` receipt covering ``up_to_seq`` that ``conn`` receives."""
    async with asyncio.timeout(30):
        async for event in conn.events():
            if not isinstance(event, ReceiptEvent):
                continue
            if event.type == kind and event.up_to_seq >= up_to_seq:
                return event
    raise AssertionError("the events ended")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_crash_before_an_ack_commits_redelivers_and_the_store_shows_it_once(
    engine: str, tmp_path: Path
) -> None:
    async with fresh_database(engine, tmp_path) as url:
        server = ServerProcess(tmp_path, url, ack_commit_delay_ms=ACK_DELAY_MS)
        await server.start()
        proxy = Proxy(server.port)  # the server comes back on the same port
        await proxy.start()
        outbox = Outbox(tmp_path / "sms-outbox.jsonl")
        try:
            async with PigeonClient(server.http_url) as sdk:
                alice = await sign_up(sdk, outbox, "+14155550101")
                bob = await sign_up(sdk, outbox, "+14155550102")
                async with (
                    LocalStore(tmp_path / "bob-store.db") as store,
                    connected(websocket_url(server.http_url), alice) as alice_conn,
                    connected(websocket_url(proxy.http_url), bob, store=store) as bob_conn,
                ):
                    chat = await alice_conn.create_chat([bob.user_id])
                    first = await alice_conn.send_message(chat.chat_id, "acked before the crash")
                    events = aiter(bob_conn.events())
                    assert (await next_message(events)).message_id == first.message_id

                    # Bob is done with it: asking for the next event acks it (the only
                    # frame Bob sends now). Once those bytes have passed the proxy, a
                    # ping on the same socket is answered after the server took the ack.
                    before = proxy.received["up"]
                    following = asyncio.create_task(next_message(events, timeout=60))
                    try:
                        await eventually(lambda: proxy.received["up"] > before)
                        acked_at = time.monotonic()
                        await bob_conn.ping()
                        await server.kill()
                        # The premise: the kill fell inside the window, before the commit.
                        assert time.monotonic() - acked_at < ACK_DELAY_MS / 1000 / 2

                        await server.start()
                        # Bob's SDK reconnects by itself; the server still has the entry.
                        await eventually(
                            lambda: proxy.transcript.count(first.message_id.encode()) == 2, 30
                        )
                        second = await alice_conn.send_message(chat.chat_id, "after the restart")
                        # The redelivered copy was dropped by the store: the next message
                        # Bob is shown is the one sent after the restart.
                        assert (await following).message_id == second.message_id
                    finally:
                        following.cancel()
                    history = await store.history(chat.chat_id)
                    assert [m.message_id for m in history] == [first.message_id, second.message_id]

                    # The copy was acked on the new socket (the SDK acks what it drops),
                    # and that ack commits: with Bob's read mark, which is not lazy,
                    # if not before. Alice hears that the first message was delivered.
                    await bob_conn.mark_read(chat.chat_id, second.seq)
                    receipt = await next_receipt(alice_conn, "delivered", first.seq)
                    assert receipt.user_id == bob.user_id
        finally:
            await proxy.stop()
            await server.stop()
    assert server.kills == 1
    assert "Traceback" not in server.log_text(), server.log_tail()
