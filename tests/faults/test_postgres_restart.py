"""PostgreSQL restarted (``pg_ctl restart -m immediate``) under a steady load: Pigeon rides it out.

A private PostgreSQL cluster (``initdb`` into a temporary directory, run as the
``postgres`` OS user, listening on 127.0.0.1 and a free port) so the shared
server is never touched. ``pigeon serve`` runs against it while a few 1:1
chats carry a steady ~200 messages a second; half-way through, PostgreSQL is
crashed and restarted. Clients may get error answers ("unavailable") or wait;
they retry with the same clientMessageId. Meanwhile one more device keeps
opening sockets, and ``/health`` and ``/v1/me`` are polled.

Asserted: every send answered in the end, no answered message lost, none
shown twice, order per chat kept; the server recovers by itself (answers again
and ``/health`` is 200 again within 10 s of the restart) and never crashed
(still running, no ``internal_error`` answer, no HTTP 500, a socket opened
during the outage closed with 1011 "unavailable" rather than dropped, no
unhandled failure in its log). Printed: the error answers and the longest gap
between two answers.

A second test takes the outage to a device in the middle of catching up: the
rest of its backlog must come on the same socket once PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.faults.support import (
    Device,
    Fleet,
    HealthWatch,
    Outgoing,
    PrivatePostgres,
    Registry,
    ServerProcess,
    direct_chat_fleet,
    seed_direct_chats,
    seed_users,
    sized,
    steady_load,
    unhandled_failures,
    wind_down,
)

RATE = 200  # messages a second, all chats together
DURATION = sized(10, 30)  # seconds of load; PostgreSQL restarts half-way
CHATS = 3
WINDOW = 16
RECOVERY_SECONDS = 10


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


async def connect_repeatedly(
    url: str, token: str, outcomes: Counter[str], stop: asyncio.Event
) -> None:
    """A device opening a socket again and again (while PostgreSQL restarts): how it ends.

    It stops on ``stop``, not only on cancellation: Python 3.11's ``wait_for``
    loses a cancellation that arrives as the frame it waits for does, and the
    loop then ran until the test's timeout (CI, once).
    """
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        try:
            async with connect(
                url, additional_headers=headers, open_timeout=5, close_timeout=1, ping_interval=None
            ) as socket_:
                frame = json.loads(await asyncio.wait_for(socket_.recv(), 5))
                outcomes[frame.get("event", "?")] += 1
        except ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
            outcomes[f"{code} {reason}".strip()] += 1
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            outcomes[type(exc).__name__] += 1
        await asyncio.sleep(0.05)


@pytest.mark.timeout(sized(120, 300))
async def test_postgres_restart_under_load(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    started_at = time.monotonic()
    await private_postgres.create_database("pigeon")
    url = private_postgres.url("pigeon")
    server = ServerProcess(tmp_path, url)
    await server.start()  # migrates the new database
    fleet, chats, (newcomer,) = await direct_chat_fleet(
        url, server, CHATS, window=WINDOW, extra_users=1
    )  # the newcomer only connects
    devices = fleet.devices
    health = HealthWatch(server.http_url, newcomer.devices[0][1])
    connects: Counter[str] = Counter()
    watching = asyncio.create_task(health.run())
    try:
        fleet.start()
        await fleet.wait_for(lambda: all(d.online.is_set() for d in devices), 30, "devices online")
        loading = asyncio.create_task(steady_load(fleet, chats, RATE, RATE * DURATION, "p"))
        await asyncio.sleep(DURATION / 2)
        assert fleet.answered() > 0
        stop_connecting = asyncio.Event()
        connecting = asyncio.create_task(
            connect_repeatedly(server.ws_url, newcomer.devices[0][1], connects, stop_connecting)
        )
        restart_issued = time.monotonic()
        await private_postgres.restart_immediately()
        restart_done = time.monotonic()
        await asyncio.sleep(0.5)
        stop_connecting.set()
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        await loading
        await fleet.wait_for(fleet.all_answered, 90, "every send answered")
        fleet.freeze()
        await fleet.wait_for(fleet.everything_delivered, 60, "every answered message delivered")
        await asyncio.sleep(0.3)  # a last health sample or two
    finally:
        alive = await wind_down(fleet, server, watching)
    fleet.check()

    answers = sorted(t for d in devices for t in d.answered_at)
    gaps = [(b - a, a) for a, b in itertools.pairwise(answers)]
    longest_gap, gap_start = max(gaps)
    # Pigeon's own recovery: its first answer once PostgreSQL accepts connections again.
    answered_again = next((t for t in answers if t > restart_done), None)
    assert answered_again is not None
    statuses = Counter(status for _, status in health.samples)
    health_back = next(
        (t for t, status in health.samples if t > restart_done and status == 200), None
    )
    log = server.log_text()
    unhandled = unhandled_failures(log)
    background_failures = log.count("revocations.failed") + log.count("housekeeping.failed")
    figures = fleet.figures()
    print(
        f"\n[postgres restart] rate={RATE}/s duration={DURATION}s "
        f"restart_took={restart_done - restart_issued:.2f}s "
        f"answers_again={answered_again - restart_done:.2f}s_after_postgres_was_back "
        f"({answered_again - restart_issued:.2f}s after the crash) "
        f"health_200_after={(health_back or float('nan')) - restart_issued:.2f}s "
        f"longest_gap={longest_gap:.2f}s (at +{gap_start - restart_issued:.2f}s from restart) "
        f"errors={sum(figures.errors.values())} health={dict(statuses)} "
        f"me={dict(health.me)} connects_meanwhile={dict(connects)} "
        f"server_alive={alive} unhandled_failures_in_log={unhandled} "
        f"background_rounds_failed={background_failures} "
        f"{figures.line()} seconds={time.monotonic() - started_at:.1f}"
    )
    assert alive, server.log_tail()
    assert answered_again - restart_issued < RECOVERY_SECONDS
    assert health_back is not None
    assert health_back - restart_issued < RECOVERY_SECONDS
    assert statuses[500] == 0, statuses  # 503 while the database is away, never a 500
    assert statuses[None] == 0, statuses  # and it always answered
    assert set(health.me) <= {200, 503}, health.me
    # A socket opened meanwhile gets "ready", or is closed with 1011 "unavailable".
    assert set(connects) <= {"ready", "1011 unavailable"}, connects
    assert figures.errors["internal_error"] == 0, figures.errors
    assert set(figures.errors) <= {"unavailable"}, figures.errors
    assert unhandled == 0, server.log_tail()
    figures.assert_zeros()


@pytest.mark.timeout(120)
async def test_a_device_catching_up_gets_its_backlog_after_an_outage(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """The socket's pump reads the backlog from the database; if that read fails, it must try
    again by itself once the database is back, not wait for some other event to wake it.

    Bob is offline while Alice sends him more than ``ws_max_in_flight`` (256) messages.
    He connects and gets the first 256; PostgreSQL goes down; his ack frees room, so
    the server reads the rest from the database, which fails; PostgreSQL comes back.
    Nothing else happens on his socket, yet the rest must arrive on it.
    """
    backlog = 400
    await private_postgres.create_database("pigeon")
    url = private_postgres.url("pigeon")
    server = ServerProcess(tmp_path, url)
    await server.start()
    alice, bob = await seed_users(url, 2)
    (chat,) = await seed_direct_chats(url, [(alice.user_id, bob.user_id)])
    registry = Registry()
    sender = Device("alice", alice, lambda: server.ws_url, registry, window=32)
    fleet = Fleet([sender], {chat: [sender]})
    received: list[dict[str, Any]] = []
    socket_: ClientConnection | None = None
    try:
        sender.start()
        items = [Outgoing(chat, f"b{n:04d}", f"b{n:04d} backlog") for n in range(backlog)]
        fleet.send(sender, items)
        await fleet.wait_for(fleet.all_answered, 60, "the backlog sent")

        socket_ = await connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {bob.devices[0][1]}"},
            ping_interval=None,
        )

        async def read() -> None:
            assert socket_ is not None
            async for raw in socket_:
                frame = json.loads(raw)
                if frame.get("event") == "message":
                    received.append(frame["data"])

        reading = asyncio.create_task(read())
        await fleet.wait_for(lambda: len(received) >= 256, 20, "the first 256")
        await asyncio.sleep(0.5)
        first = len(received)
        await private_postgres.crash()
        await socket_.send(json.dumps({"type": "ack", "data": {"upTo": received[-1]["inboxSeq"]}}))
        await asyncio.sleep(1.0)  # the server tries to read the rest now, and cannot
        during_outage = len(received)
        await private_postgres.start_again()
        back = time.monotonic()
        with contextlib.suppress(AssertionError):
            await fleet.wait_for(lambda: len(received) >= backlog, 15, "the rest")
        rest_after = time.monotonic() - back
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    finally:
        if socket_ is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(socket_.close(), 3)
        try:
            await fleet.stop()
        finally:
            await server.stop()
    seqs = [m["seq"] for m in received]
    print(
        f"\n[catch-up across an outage] backlog={backlog} before_outage={first} "
        f"during_outage={during_outage} after={len(received)} "
        f"rest_arrived_within={rest_after:.1f}s_after_postgres_was_back"
    )
    assert first == 256
    assert seqs == list(range(1, backlog + 1))  # the rest arrived, on the same socket, in order
