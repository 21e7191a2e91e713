"""The bus (Redis, NATS) killed and started again under a steady load: late, never lost.

Two ``pigeon serve`` nodes on one PostgreSQL database and a private bus
server (``redis-server`` or ``nats-server`` on a free port: the machine's
shared ones are never touched). A few 1:1 chats, each with one side on each
node, carry a steady load, so every message crosses the bus. The bus server
is SIGKILLed, stays away for a few seconds, and starts again on the same port
(Redis empty: nothing was saved).

Asserted, per bus: every send answered; no answered message lost, none shown
twice, order per chat kept; while the bus is away both nodes' ``/health``
say ``"bus": "unreachable"`` (still 200: the database decides it) and
messages sent meanwhile still arrive, through each connection reading its
queue every ``PIGEON_BUS_FALLBACK_POLL_SECONDS``; real-time delivery is back
within 5 s of the restart, by itself. Printed: how many messages arrived
while the bus was away, and how long after the restart every message again
arrived within ``REALTIME_SECONDS`` of being sent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.support import (
    FULL,
    BusServer,
    Fleet,
    ServerProcess,
    cross_node_fleet,
    fresh_database,
    sized,
    steady_load,
    unhandled_failures,
)
from tests.support import eventually

RATE = sized(100, 300)  # messages a second, all chats together
BEFORE = 1.5  # seconds of load before the bus is killed (answered sends, not a pause)
OUTAGE = 5.0 if FULL else 2.5  # seconds without a bus, at the least
FALLBACK_POLL = 1.0  # PIGEON_BUS_FALLBACK_POLL_SECONDS here (2 by default)
# The bus comes back only once the fallback poll has brought what the devices
# were sent in an outage that long (less the poll's own lag): waited for, not slept.
WHILE_AWAY = int(RATE * (OUTAGE - FALLBACK_POLL))
AFTER = sized(6, 15)  # seconds of load after it is back
CHATS = sized(4, 20)
WINDOW = 16
REALTIME_SECONDS = 0.3  # a message this fast came over the bus, not from a poll
RECOVERY_LIMIT = 5.0


async def bus_states(nodes: list[ServerProcess]) -> list[str]:
    """What each node's ``/health`` says about the bus (its status must stay 200)."""
    states = []
    async with httpx.AsyncClient(timeout=2) as http:
        for node in nodes:
            response = await http.get(f"{node.http_url}/health")
            assert response.status_code == 200, response.text
            states.append(response.json()["bus"])
    return states


async def wait_for_bus_state(fleet: Fleet, nodes: list[ServerProcess], state: str) -> None:
    async def reached() -> bool:
        fleet.check()
        return await bus_states(nodes) == [state] * len(nodes)

    await eventually(reached, timeout=5, interval=0.05)


@pytest.mark.timeout(sized(90, 300))
@pytest.mark.parametrize("bus", ["redis", "nats"])
async def test_the_bus_restarted_under_load_loses_nothing(bus: str, tmp_path: Path) -> None:
    bus_server = BusServer(bus, tmp_path / bus)
    await bus_server.start()
    try:
        async with fresh_database("postgresql", tmp_path) as url:
            nodes = []
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                node = ServerProcess(
                    tmp_path / name,
                    url,
                    bus_url=bus_server.url,
                    bus_fallback_poll_seconds=FALLBACK_POLL,
                )
                nodes.append(node)
            fleet, chats, _ = await cross_node_fleet(url, nodes, CHATS, window=WINDOW)
            total = int(RATE * (BEFORE + OUTAGE + AFTER))
            await asyncio.gather(*(node.start() for node in nodes))
            try:
                fleet.start()
                await fleet.wait_for(
                    lambda: all(d.online.is_set() for d in fleet.devices), 30, "devices online"
                )
                assert await bus_states(nodes) == ["ok", "ok"]
                loading = asyncio.create_task(steady_load(fleet, chats, RATE, total, "r"))
                await fleet.wait_for(
                    lambda: fleet.answered() >= RATE * BEFORE, 30, "load before the kill"
                )
                down_at = time.perf_counter()
                await bus_server.kill()
                await wait_for_bus_state(fleet, nodes, "unreachable")
                await fleet.wait_for(
                    lambda: fleet.arrived_since(down_at) >= WHILE_AWAY,
                    60,
                    "messages sent after the kill brought by the fallback poll",
                )
                up_at = time.perf_counter()
                await bus_server.start()
                await wait_for_bus_state(fleet, nodes, "ok")
                health_back_after = time.perf_counter() - up_at
                await loading
                await fleet.wait_for(fleet.all_answered, 60, "every send answered")
                fleet.freeze()
                await fleet.wait_for(
                    fleet.everything_delivered, 60, "every answered message delivered"
                )
            finally:
                try:
                    await fleet.stop()
                finally:
                    alive = [node.alive for node in nodes]
                    for node in nodes:
                        await node.stop()
            fleet.check()
    finally:
        await bus_server.stop()

    sent_at = fleet.devices[0].registry.sent_at
    arrived = {cmid: t for device in fleet.devices for cmid, t in device.arrived.items()}
    # Sent after the bus died, shown before it was back: only the fallback poll brings those.
    while_away = sum(1 for c, t in arrived.items() if down_at < sent_at[c] and t < up_at)
    after = sorted((sent_at[c], t - sent_at[c]) for c, t in arrived.items() if sent_at[c] > up_at)
    slow = [sent for sent, latency in after if latency > REALTIME_SECONDS]
    # Real time is back from the first message after which every one was fast.
    back_from = next((sent for sent, _ in after if not slow or sent > slow[-1]), float("inf"))
    realtime_after = max(back_from - up_at, 0.0)
    figures = fleet.figures()
    print(
        f"\n[bus restart {bus}] rate={RATE}/s outage={up_at - down_at:.1f}s "
        f"fallback_poll={FALLBACK_POLL}s "
        f"{figures.line()}"
    )
    print(
        f"[bus restart {bus}] delivered_while_bus_away={while_away} "
        f"health_bus_ok_after={health_back_after:.2f}s "
        f"realtime_back_after={realtime_after:.2f}s (every later message within "
        f"{REALTIME_SECONDS}s; {len(after)} sent after the restart, {len(slow)} slower)"
    )
    assert all(alive), [node.log_tail() for node in nodes]
    assert sum(unhandled_failures(node.log_text()) for node in nodes) == 0
    figures.assert_zeros()
    assert while_away > 0, "nothing arrived while the bus was away"
    assert realtime_after < RECOVERY_LIMIT, realtime_after
    assert len(after) - len(slow) > RATE, "too few fast messages after the restart to judge"
