"""A server killed in the middle of a burst loses no acknowledged message and stores none twice.

``pigeon serve`` runs as a real process. A sender keeps 20 sends outstanding;
after about 500 answers the process is SIGKILLed and started again on the same
database. The sender resends every send it had no answer for (same
clientMessageIds) and carries on to 2,000; the receiver reconnects and acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL
from tests.faults.support import ServerProcess
from tests.live import WsClient
from tests.support import Outbox, register

TOTAL = 2000
WINDOW = 20
KILL_AFTER = 500


@pytest.fixture(params=["sqlite", "postgresql"])
async def server_database(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None for SQLite in the data directory, or a fresh PostgreSQL database the server migrates."""
    if request.param == "sqlite":
        yield None
        return
    base = make_url(POSTGRES_URL)
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"pigeon_restart_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield base.set(database=name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pigeon_process(
    tmp_path: Path, server_database: str | None
) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(tmp_path, server_database)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def cmid(index: int) -> str:
    return f"burst-{index:04d}"


class Receiver:
    """Bob's phone: connected whenever the server is up, acking everything it gets."""

    def __init__(self, server: ServerProcess, session: dict[str, Any]) -> None:
        self.server = server
        self.session = session
        self.frames: list[dict[str, Any]] = []  # every message event on the wire
        self.ids: set[str] = set()
        self.connections = 0
        self.ready = asyncio.Event()
        self.complete = asyncio.Event()

    async def run(self) -> None:
        while not self.complete.is_set():
            try:
                client = await WsClient.open(
                    self.server.ws_url, self.session["access_token"], open_timeout=2
                )
            except Exception:  # refused, reset or timed out: the server is down
                await asyncio.sleep(0.1)
                continue
            self.connections += 1
            try:
                await self._read(client)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)

    async def _read(self, client: WsClient) -> None:
        while not self.complete.is_set():
            if client.close_code is not None and client.events.empty():
                return  # the server went away: reconnect
            try:
                frame = await client.next_event(timeout=0.2)
            except TimeoutError:
                continue
            if frame.get("event") == "drained":
                self.ready.set()
            if frame.get("event") == "message":
                self.frames.append(frame["data"])
                self.ids.add(frame["data"]["messageId"])
                if len(self.ids) >= TOTAL:
                    self.complete.set()


class Sender:
    """Alice's phone: at most ``WINDOW`` sends outstanding, every answer recorded."""

    def __init__(self, chat_id: str) -> None:
        self.chat_id = chat_id
        self.answers: dict[str, dict[str, Any]] = {}
        self._outstanding: list[asyncio.Task[Any]] = []

    async def send(self, client: WsClient, id_: str) -> dict[str, Any]:
        data = {"chatId": self.chat_id, "clientMessageId": id_, "message": f"restart {id_}"}
        frame = await client.request("sendMessage", data)
        assert frame["ok"], frame
        answer: dict[str, Any] = frame["data"]
        earlier = self.answers.setdefault(id_, answer)
        assert earlier["messageId"] == answer["messageId"], (id_, earlier, answer)
        return answer

    async def burst(
        self, client: WsClient, ids: list[str], stop_after: int | None = None
    ) -> list[str]:
        """Send ``ids`` in order with a window; stop starting new ones after ``stop_after`` answers.

        Returns the ids that were started.
        """
        window = asyncio.Semaphore(WINDOW)
        tasks: list[asyncio.Task[Any]] = []
        started: list[str] = []

        async def one(id_: str) -> dict[str, Any]:
            try:
                return await self.send(client, id_)
            finally:
                window.release()

        for id_ in ids:
            if stop_after is not None and len(self.answers) >= stop_after:
                break
            await window.acquire()
            tasks.append(asyncio.create_task(one(id_)))
            started.append(id_)
        if stop_after is None:
            await asyncio.gather(*tasks)
        else:
            self._outstanding = tasks
        return started

    async def abandon(self) -> None:
        """Forget the sends still waiting for an answer from a dead server."""
        for task in self._outstanding:
            task.cancel()
        await asyncio.gather(*self._outstanding, return_exceptions=True)


async def open_client(server: ServerProcess, session: dict[str, Any]) -> WsClient:
    client = await WsClient.open(server.ws_url, session["access_token"])
    await client.next_event("drained", timeout=10)
    return client


@pytest.mark.timeout(180)
async def test_a_killed_server_loses_no_acked_message_and_duplicates_none(
    pigeon_process: ServerProcess, server_database: str | None
) -> None:
    server = pigeon_process
    engine = "postgresql" if server_database else "sqlite"
    started_at = time.monotonic()
    outbox = Outbox(server.data_dir / "sms-outbox.jsonl")
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        alice = await register(http, outbox, "+14155550181")
        bob = await register(http, outbox, "+14155550182")

    async with asyncio.timeout(150):
        sender_socket = await open_client(server, alice)
        chat = await sender_socket.call("createChat", {"participants": [bob["user_id"]]})
        sender = Sender(chat["chatId"])
        receiver = Receiver(server, bob)
        receiving = asyncio.create_task(receiver.run())
        try:
            await asyncio.wait_for(receiver.ready.wait(), 10)

            # Phase 1: the burst, until the server is killed after ~500 answers.
            everything = [cmid(i) for i in range(TOTAL)]
            started = await sender.burst(sender_socket, everything, stop_after=KILL_AFTER)
            await server.kill()
            await sender_socket.closed(10)  # answers already on the wire are still read
            await sender.abandon()
            acked_before_kill = dict(sender.answers)
            unanswered = [i for i in started if i not in acked_before_kill]
            assert len(acked_before_kill) >= KILL_AFTER
            assert unanswered, "the kill came after every started send was answered"

            # Phase 2: the same database, a new process; resend, then carry on.
            await server.start()
            sender_socket = await open_client(server, alice)
            # A send answered before the kill, sent again: the same message.
            for id_ in list(acked_before_kill)[-5:]:
                again = await sender.send(sender_socket, id_)
                assert again["duplicate"] is True
            resent = [await sender.send(sender_socket, id_) for id_ in unanswered]
            committed_unanswered = sum(answer["duplicate"] for answer in resent)
            await sender.burst(sender_socket, everything[len(started) :])
            assert len(sender.answers) == TOTAL
            await asyncio.wait_for(receiver.complete.wait(), 60)
        finally:
            receiver.complete.set()
            await asyncio.wait_for(receiving, 10)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender_socket.close(), 5)

    # What Bob's phone shows, after dropping events it had already seen.
    first_seen: dict[str, dict[str, Any]] = {}
    for message in receiver.frames:
        first_seen.setdefault(message["messageId"], message)
    shown = list(first_seen.values())
    ids_per_cmid: dict[str, set[str]] = {}
    for message in receiver.frames:
        ids_per_cmid.setdefault(message["message"].removeprefix("restart "), set()).add(
            message["messageId"]
        )
    lost = [i for i, a in sender.answers.items() if a["messageId"] not in first_seen]
    lost_before_kill = [i for i in lost if i in acked_before_kill]
    duplicated = [i for i, ids in ids_per_cmid.items() if len(ids) > 1]
    redelivered = len(receiver.frames) - len(shown)
    seqs = [m["seq"] for m in shown]

    print(
        f"\n[{engine}] sent={TOTAL} acked_before_kill={len(acked_before_kill)} "
        f"unanswered_at_kill={len(unanswered)} committed_but_unanswered={committed_unanswered} "
        f"acked={len(sender.answers)} received={len(shown)} lost={len(lost)} "
        f"duplicated={len(duplicated)} redelivered_on_wire={redelivered} "
        f"receiver_connections={receiver.connections} "
        f"seconds={time.monotonic() - started_at:.1f}"
    )
    assert lost_before_kill == []
    assert lost == []
    assert duplicated == []
    assert len(shown) == TOTAL
    assert seqs == list(range(1, TOTAL + 1))
    assert [m["message"] for m in shown] == [f"restart {cmid(i)}" for i in range(TOTAL)]
    assert {a["messageId"] for a in sender.answers.values()} == set(first_seen)
    assert server.starts == 2
