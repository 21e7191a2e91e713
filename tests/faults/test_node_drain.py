"""Draining a node for a deploy: SIGTERM closes its sockets with 1012 and clients move on.

Two ``pigeon serve`` nodes on one PostgreSQL database and a private Redis bus.
Node a gets SIGTERM (what systemd, Kubernetes or a deploy script sends) in
the middle of a burst. It stops accepting connections, closes every
WebSocket with 1012 (service restart), finishes and exits 0; its devices
reconnect to node b and resume from their queues.

Asserted: every device of node a saw 1012 (not a dropped connection); a new
connection to node a is refused from the first 1012 on; node a exited by
itself with status 0; nothing acked is lost, nothing shown twice, order per
chat kept. A second test runs the Python SDK (``pigeon.client``) behind a
load balancer: on 1012 it reconnects by itself, lands on node b and hands
the application every message, once, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from bench.common import SeededUser

from pigeon.client import Connection, MessageEvent, ReconnectPolicy, Session
from tests.faults.support import (
    BusServer,
    LoadBalancer,
    ServerProcess,
    cross_node_fleet,
    fresh_database,
    seed_direct_chats,
    seed_users,
    sized,
    steady_load,
)

CLOSE_SERVICE_RESTART = 1012
RATE = sized(200, 500)
DURATION = sized(3, 10)  # seconds of load; node a gets SIGTERM a third of the way in
CHATS = sized(4, 20)
WINDOW = 16
SDK_MESSAGES = sized(60, 300)


async def start_nodes(tmp_path: Path, url: str, bus_url: str) -> list[ServerProcess]:
    nodes = two_nodes(tmp_path, url, bus_url)
    await asyncio.gather(*(node.start() for node in nodes))
    return nodes


def two_nodes(tmp_path: Path, url: str, bus_url: str) -> list[ServerProcess]:
    """Nodes a and b (not started yet), each with a data dir and log of its own."""
    nodes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        nodes.append(ServerProcess(tmp_path / name, url, bus_url=bus_url))
    return nodes


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


@pytest.mark.timeout(sized(90, 300))
async def test_sigterm_drains_a_node_with_1012_and_its_devices_move(tmp_path: Path) -> None:
    bus = BusServer("redis", tmp_path / "redis")
    await bus.start()
    try:
        async with fresh_database("postgresql", tmp_path) as url:
            a, b = nodes = two_nodes(tmp_path, url, bus.url)
            fleet, chats, choices = await cross_node_fleet(url, nodes, CHATS, window=WINDOW)
            try:
                await asyncio.gather(*(node.start() for node in nodes))
                fleet.start()
                await fleet.wait_for(
                    lambda: all(d.online.is_set() for d in fleet.devices), 30, "devices online"
                )
                on_a = [d for d, c in zip(fleet.devices, choices, strict=True) if c.last is a]
                assert len(on_a) == len(fleet.devices) // 2
                total = RATE * DURATION
                loading = asyncio.create_task(steady_load(fleet, chats, RATE, total, "t"))
                await fleet.wait_for(
                    lambda: fleet.answered() >= total / 3, 30, "a third of the load answered"
                )
                answered_at_sigterm = fleet.answered()
                sigterm_at = time.monotonic()
                stopping = asyncio.create_task(a.stop())
                await fleet.wait_for(
                    lambda: any(d.close_codes[CLOSE_SERVICE_RESTART] for d in on_a), 10, "a 1012"
                )
                refused_while_draining = await refused(a.port)
                await stopping
                drained_after = time.monotonic() - sigterm_at
                await fleet.wait_for(
                    lambda: all(d.online.is_set() for d in on_a), 30, "node a's devices on b"
                )
                moved_after = time.monotonic() - sigterm_at
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
                    for node in nodes:
                        await node.stop()
            fleet.check()
    finally:
        await bus.stop()

    closes = {d.name: dict(d.close_codes) for d in on_a}
    figures = fleet.figures()
    print(
        f"\n[drain] devices={len(fleet.devices)} on_drained_node={len(on_a)} "
        f"answered_at_sigterm={answered_at_sigterm} {figures.line()}"
    )
    print(
        f"[drain] node a exited {drained_after:.2f}s after SIGTERM (status "
        f"{a.process.returncode if a.process else None}); its devices online on b after "
        f"{moved_after:.2f}s"
    )
    assert a.kills == 0, a.log_tail()
    assert a.process is not None
    assert a.process.returncode == 0, a.log_tail()
    # One 1012 each, then the test's own close (1000) of the socket on node b.
    assert all(c == {CLOSE_SERVICE_RESTART: 1, 1000: 1} for c in closes.values()), closes
    assert refused_while_draining
    assert all(choice.last is b for choice in choices)
    assert "Traceback" not in a.log_text() + b.log_text(), a.log_tail() + b.log_tail()
    figures.assert_zeros()


@pytest.mark.timeout(sized(60, 180))
async def test_the_sdk_moves_to_another_node_on_1012(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pigeon.client")
    bus = BusServer("redis", tmp_path / "redis")
    await bus.start()
    try:
        async with fresh_database("postgresql", tmp_path) as url:
            sender_user, recipient_user = await seed_users(url, 2)
            (chat_id,) = await seed_direct_chats(
                url, [(sender_user.user_id, recipient_user.user_id)]
            )
            a, b = nodes = await start_nodes(tmp_path, url, bus.url)
            balancer = LoadBalancer(nodes)  # its first connection goes to node a
            await balancer.start()
            quick = ReconnectPolicy(initial_delay=0.1, max_delay=1.0)
            sender = Connection(b.ws_url, session(sender_user), reconnect=quick)
            recipient = Connection(balancer.ws_url, session(recipient_user), reconnect=quick)
            received: list[MessageEvent] = []
            try:
                await sender.open()
                await recipient.open()
                assert balancer.connections_to(a) == 1

                async def receive() -> None:
                    async for event in recipient.events():
                        if isinstance(event, MessageEvent):
                            received.append(event)
                            if len(received) == SDK_MESSAGES:
                                return

                receiving = asyncio.create_task(receive())
                sent = []
                for n in range(SDK_MESSAGES):
                    if n == SDK_MESSAGES // 3:
                        await a.stop()  # SIGTERM, and wait until it has exited
                    sent.append(await sender.send_message(chat_id, f"m{n:04d}"))
                await asyncio.wait_for(receiving, 30)
            finally:
                await recipient.close()
                await sender.close()
                await balancer.stop()
                for node in nodes:
                    await node.stop()
    finally:
        await bus.stop()

    texts = [event.text for event in received]
    print(
        f"\n[drain sdk] sent={len(sent)} received={len(received)} "
        f"reconnects={recipient.reconnects} "
        f"node_a_exit={a.process.returncode if a.process else None}"
    )
    assert a.kills == 0, a.log_tail()
    assert a.process is not None
    assert a.process.returncode == 0, a.log_tail()
    assert recipient.reconnects == 1
    assert balancer.connections_to(b) == 1
    assert any(
        "socket closed (1012" in record.getMessage() and "reconnecting" in record.getMessage()
        for record in caplog.records
    ), [record.getMessage() for record in caplog.records]
    assert texts == [f"m{n:04d}" for n in range(SDK_MESSAGES)]
    assert [event.message_id for event in received] == [s.message_id for s in sent]


def session(user: SeededUser) -> Session:
    """A seeded device's session (no refresh token: these tokens do not expire in a test)."""
    device_id, token = user.devices[0]
    return Session(user.user_id, device_id, token, "")
