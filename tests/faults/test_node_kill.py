"""``kill -9`` one of two nodes during a burst: its devices move to the other and lose nothing.

Two ``pigeon serve`` processes on one PostgreSQL database and one bus (a
private Redis, or a private NATS). Every 1:1 chat has one side on each node,
and the group's members alternate between them, so nearly every message
crosses the bus. Mid-burst node a is SIGKILLed and stays dead (the seed is
printed; ``PIGEON_FAULTS_SEED`` replays it): its devices, as a phone behind a
load balancer would, reconnect to node b, resend every clientMessageId they
had no answer for, and read the rest from their queues.

Asserted, per bus: every send answered in the end; every answered message
reaches every other member's device (lost 0); none is shown twice after dedup
by messageId (duplicated 0); each device sees each chat's seqs strictly
increasing (order kept) and exactly the seq its sender was answered with;
node b never logged a traceback. Printed: sent, acked, resends, lost,
duplicated and the time to recover (every device of node a back online on
node b; the first answer one of them got there).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.faults.support import (
    BusServer,
    Device,
    Fleet,
    NodeChoice,
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

TOTAL = sized(600, 10_000)
CHATS = sized(8, 50)  # one of them the group
GROUP_MEMBERS = sized(10, 100)
GROUP_SENDERS = 4
WINDOW = 8


@pytest.mark.timeout(sized(120, 900))
@pytest.mark.parametrize("bus", ["redis", "nats"])
async def test_a_node_killed_during_a_burst_loses_nothing(bus: str, tmp_path: Path) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    print(f"\n[node kill {bus}] seed={seed} (PIGEON_FAULTS_SEED={seed} replays it)")
    bus_server = BusServer(bus, tmp_path / bus)
    await bus_server.start()
    pairs = CHATS - 1
    try:
        async with fresh_database("postgresql", tmp_path) as url:
            users = await seed_users(url, 2 * pairs + GROUP_MEMBERS)
            direct = await seed_direct_chats(
                url, [(users[2 * i].user_id, users[2 * i + 1].user_id) for i in range(pairs)]
            )
            group = await seed_group(url, [u.user_id for u in users[2 * pairs :]])
            nodes = []
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                nodes.append(ServerProcess(tmp_path / name, url, bus_url=bus_server.url))
            a, b = nodes
            registry = Registry()
            # Device i starts on node i % 2: each 1:1 chat has a side on each node.
            choices = [NodeChoice(nodes, home=i % 2) for i in range(len(users))]
            devices = [
                Device(f"d{i}", user, choices[i], registry, window=WINDOW, rng_seed=seed + i)
                for i, user in enumerate(users)
            ]
            members: dict[str, Sequence[Device]] = {
                chat_id: devices[2 * i : 2 * i + 2] for i, chat_id in enumerate(direct)
            }
            members[group] = devices[2 * pairs :]
            fleet = Fleet(devices, members)
            chat_ids = [*direct, group]
            plan: dict[Device, list[Outgoing]] = {device: [] for device in devices}
            for n in range(TOTAL):
                chat_id = chat_ids[n % len(chat_ids)]
                turn = n // len(chat_ids)
                senders = (
                    members[chat_id][:2]
                    if chat_id != group
                    else devices[2 * pairs :][:GROUP_SENDERS]
                )
                plan[senders[turn % len(senders)]].append(
                    Outgoing(chat_id, f"n{n:06d}", f"n{n:06d} node kill burst")
                )
            kill_fraction = rng.uniform(0.25, 0.6)

            await asyncio.gather(a.start(), b.start())
            try:
                fleet.start()
                await fleet.wait_for(
                    lambda: all(d.online.is_set() for d in devices), 60, "every device online"
                )
                on_a = [d for d, choice in zip(devices, choices, strict=True) if choice.last is a]
                assert len(on_a) == len(devices) // 2
                for device, items in plan.items():
                    fleet.send(device, items)
                # The kill point counts node a's own answers: counted over the
                # whole fleet, node a's devices could finish their share before
                # the kill and leave nothing to resend on node b.
                planned_on_a = sum(len(plan[d]) for d in on_a)
                kill_point = int(planned_on_a * kill_fraction)

                def answered_on_a() -> int:
                    return sum(len(d.answers) for d in on_a)

                await fleet.wait_for(
                    lambda: answered_on_a() >= kill_point, 120, f"{kill_point} answers on node a"
                )
                answered_at_kill = fleet.answered()
                killed_at = time.monotonic()
                await a.kill()
                unanswered_on_a = planned_on_a - answered_on_a()
                await fleet.wait_for(
                    lambda: all(d.online.is_set() for d in on_a), 30, "node a's devices on b"
                )
                moved_after = time.monotonic() - killed_at
                await fleet.wait_for(fleet.all_answered, sized(60, 600), "every send answered")
                fleet.freeze()
                await fleet.wait_for(
                    fleet.everything_delivered, sized(60, 300), "every answered message delivered"
                )
                finished_after = time.monotonic() - killed_at
            finally:
                try:
                    await fleet.stop()
                finally:
                    b_alive = b.alive
                    await b.stop()
                    await a.stop()
            fleet.check()
    finally:
        await bus_server.stop()

    assert all(choice.last is b for choice in choices)  # everyone ended on node b
    resumed = [t - killed_at for d in on_a for t in d.answered_at if t > killed_at]
    first_answer_after = min(resumed) if resumed else float("nan")
    figures = fleet.figures()
    print(
        f"[node kill {bus}] devices={len(devices)} on_killed_node={len(on_a)} "
        f"answered_at_kill={answered_at_kill} unanswered_on_a={unanswered_on_a} {figures.line()}"
    )
    print(
        f"[node kill {bus}] recovery: node a's devices back online on b after "
        f"{moved_after:.2f}s, their first answer on b after {first_answer_after:.2f}s, "
        f"everything answered and delivered {finished_after:.2f}s after the kill"
    )
    assert b_alive, b.log_tail()
    assert "Traceback" not in b.log_text(), b.log_tail()
    assert resumed, "no device of node a got an answer on node b"
    figures.assert_zeros()
