"""``kill -9`` the server three times during a burst: nothing acknowledged is lost or shown twice.

Many chats at once (1:1 chats, both sides sending, and one group with a few
senders), every device connected as a phone would be. The server process is
SIGKILLed at three random points (the seed is printed; ``PIGEON_FAULTS_SEED``
replays it) and started again on the same database after a random pause.
Senders resend every clientMessageId they had no answer for; receivers
reconnect, ack and drop what they had already seen (by messageId).

Asserted, per engine: every send is answered in the end; every answered
message reaches every other member's device (lost 0); no message is shown
twice (duplicated 0); each device sees each chat's seqs strictly increasing
(order breaks 0) and exactly the seq its sender was answered with.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
from pathlib import Path

import pytest

from tests.faults.support import (
    Device,
    Fleet,
    Outgoing,
    Registry,
    ServerProcess,
    fresh_database,
    run_seed,
    seed_direct_chats,
    seed_group,
    seed_users,
    sized,
)

TOTAL = sized(2000, 10_000)
CHATS = sized(10, 50)  # one of them the group
GROUP_MEMBERS = sized(20, 100)
GROUP_SENDERS = 5
KILLS = 3
WINDOW = 8


@pytest.mark.timeout(sized(170, 1200))
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_kill9_during_a_burst_loses_nothing_acked(engine: str, tmp_path: Path) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    print(f"\n[kill9 {engine}] seed={seed} (PIGEON_FAULTS_SEED={seed} replays it)")
    started_at = time.monotonic()
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{what}@{time.monotonic() - started_at:.1f}")

    pairs = CHATS - 1
    async with fresh_database(engine, tmp_path) as url:
        users = await seed_users(url, 2 * pairs + GROUP_MEMBERS)
        direct = await seed_direct_chats(
            url, [(users[2 * i].user_id, users[2 * i + 1].user_id) for i in range(pairs)]
        )
        group_users = users[2 * pairs :]
        group = await seed_group(url, [u.user_id for u in group_users])

        server = ServerProcess(tmp_path, url)
        registry = Registry()
        devices = [
            Device(f"d{i}", user, lambda: server.ws_url, registry, window=WINDOW, rng_seed=seed + i)
            for i, user in enumerate(users)
        ]
        members = {chat_id: devices[2 * i : 2 * i + 2] for i, chat_id in enumerate(direct)}
        members[group] = devices[2 * pairs :]
        fleet = Fleet(devices, members)

        # The plan: TOTAL messages spread evenly over the chats. In a 1:1 chat both
        # sides take turns; in the group the first GROUP_SENDERS members do.
        chat_ids = [*direct, group]
        plan: dict[Device, list[Outgoing]] = {device: [] for device in devices}
        for n in range(TOTAL):
            chat_id = chat_ids[n % len(chat_ids)]
            turn = n // len(chat_ids)
            senders = members[chat_id][:2] if chat_id != group else members[group][:GROUP_SENDERS]
            sender = senders[turn % len(senders)]
            plan[sender].append(Outgoing(chat_id, f"k{n:06d}", f"k{n:06d} kill9 burst"))
        kill_points = [
            int(TOTAL * rng.uniform(0.08 + 0.28 * k, 0.28 + 0.28 * k)) for k in range(KILLS)
        ]
        print(f"[kill9 {engine}] kill after answers: {kill_points}")

        await server.start()
        try:
            fleet.start()
            await fleet.wait_for(
                lambda: all(d.online.is_set() for d in devices), 60, "every device online"
            )
            mark("online")
            for device, items in plan.items():
                if items:
                    fleet.send(device, items)
            answered_at_kill = []
            for point in kill_points:
                await fleet.wait_for(lambda p=point: fleet.answered() >= p, 120, f"{point} answers")
                await asyncio.sleep(rng.uniform(0, 0.2))
                answered_at_kill.append(fleet.answered())
                await server.kill()
                await asyncio.sleep(rng.uniform(0, 1.0))
                mark("killed")
                await server.start()
                mark("restarted")
            await fleet.wait_for(fleet.all_answered, sized(90, 600), "every send answered")
            mark("answered")
            fleet.freeze()
            await fleet.wait_for(
                fleet.everything_delivered,
                sized(60, 300),
                "every answered message delivered",
            )
            mark("delivered")
        finally:
            try:
                await fleet.stop()
            finally:
                await server.stop()
        mark("stopped")
        fleet.check()

    figures = fleet.figures()
    print(
        f"[kill9 {engine}] kills={server.kills} answered_at_kill={answered_at_kill} "
        f"chats={len(chat_ids)} group_members={GROUP_MEMBERS} devices={len(devices)} "
        f"{figures.line()} seconds={time.monotonic() - started_at:.1f}"
    )
    print(f"[kill9 {engine}] timeline: {' '.join(timeline)}")
    assert server.kills == KILLS
    assert "Traceback" not in server.log_text(), server.log_tail()
    figures.assert_zeros()


async def test_clients_killed_during_the_handshake_leave_no_traceback(tmp_path: Path) -> None:
    """The other side of ``kill -9``: clients that die right after the upgrade.

    The server used to log "Exception in ASGI application" for each one (its
    ``ready`` frame went to a socket already gone).
    """
    async with fresh_database("sqlite", tmp_path) as url:
        (user,) = await seed_users(url, 1)
        server = ServerProcess(tmp_path, url)
        await server.start()
        try:
            for n in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                key = base64.b64encode(os.urandom(16)).decode()
                writer.write(
                    "GET /v1/ws HTTP/1.1\r\nHost: pigeon\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n"
                    f"Authorization: Bearer {user.devices[0][1]}\r\n\r\n".encode()
                )
                await writer.drain()
                if n % 2:  # half of them after the 101, half before it
                    await reader.readuntil(b"\r\n\r\n")
                writer.transport.abort()
            device = Device("after", user, lambda: server.ws_url, Registry())
            device.start()
            fleet = Fleet([device], {})
            await fleet.wait_for(device.online.is_set, 10, "a normal client")
            await device.stop()
        finally:
            await server.stop()
    tracebacks = server.log_text().count("Traceback")
    print(f"\n[handshake kills] clients=20 tracebacks_in_log={tracebacks}")
    assert tracebacks == 0, server.log_tail()
