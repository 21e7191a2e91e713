"""A device that never reads while thousands of messages are sent to it.

The slow device connects with a tiny receive buffer and then stops reading
its socket altogether. Another device sends it many messages (the first few
hundred long, so the frames in flight overflow the socket buffers and the
server's send blocks; the rest short). Meanwhile a second pair chats at a
steady pace.

Asserted: the server's memory stays bounded (the queue waits in the
database, not in the process); the server closes the stalled connection
(``PIGEON_WS_SEND_TIMEOUT_SECONDS`` = 3; seen as its end of the TCP
connection leaving ESTABLISHED and the live-connection gauge dropping);
the second pair's messages keep flowing (p99 latency under a bound); and
after reconnecting, the slow device receives every message, in order, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.faults.support import (
    Device,
    Fleet,
    Outgoing,
    Registry,
    ServerProcess,
    fresh_database,
    rss_kib,
    seed_direct_chats,
    seed_users,
    sized,
)

TOTAL = sized(5000, 50_000)  # messages to the device that does not read
LONG = 300  # of which the first LONG carry LONG_TEXT characters
LONG_TEXT = 24_000  # 256 frames in flight x 24 kB: more than the socket buffers hold
SEND_TIMEOUT = 3.0
PAIR_RATE = 50  # the second pair's messages a second
RSS_BOUND_MIB = 50
P99_BOUND_SECONDS = 2.0
CLOSE_BOUND_SECONDS = 30.0

_TCP_ESTABLISHED = "01"


def tcp_state(local_port: int, remote_port: int) -> str | None:
    """The state (hex, /proc/net/tcp) of the 127.0.0.1 connection between the ports, if any."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == (
            remote_port
        ):
            return fields[3]
    return None


async def live_connections(http: httpx.AsyncClient) -> int:
    text = (await http.get("/metrics")).text
    match = re.search(r"^pigeon_websocket_connections (\S+)$", text, re.MULTILINE)
    assert match, text[:500]
    return int(float(match.group(1)))


async def open_stalled(url: str, token: str) -> tuple[ClientConnection, int]:
    """A socket that takes the handshake and then never reads again; returns it and its port."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    raw.setblocking(False)
    port = int(url.split(":")[2].split("/")[0])
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", port))
    client = await connect(
        url,
        sock=raw,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=1,
        ping_interval=None,
        compression=None,
        close_timeout=1,
    )
    client.transport.pause_reading()
    return client, raw.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


@pytest.mark.timeout(sized(150, 900))
async def test_a_device_that_never_reads(tmp_path: Path) -> None:
    started_at = time.monotonic()
    async with fresh_database("sqlite", tmp_path) as url:
        users = await seed_users(url, 4)
        to_slow, pair = await seed_direct_chats(
            url, [(users[0].user_id, users[1].user_id), (users[2].user_id, users[3].user_id)]
        )
        server = ServerProcess(tmp_path, url, ws_send_timeout_seconds=SEND_TIMEOUT)
        registry = Registry()
        sender, slow, talker, listener = (
            Device(f"d{i}", user, lambda: server.ws_url, registry, window=64 if i == 0 else 8)
            for i, user in enumerate(users)
        )
        fleet = Fleet(
            [sender, slow, talker, listener],
            {to_slow: [sender, slow], pair: [talker, listener]},
        )
        await server.start()
        http = httpx.AsyncClient(base_url=server.http_url, timeout=10)
        stalled: ClientConnection | None = None
        try:
            for device in (sender, talker, listener):
                device.start()
            await fleet.wait_for(
                lambda: all(d.online.is_set() for d in (sender, talker, listener)), 30, "online"
            )
            # Warm up the paths measured below, then take the memory baseline.
            fleet.send(talker, [Outgoing(pair, f"w{n:04d}", f"w{n:04d} warm") for n in range(50)])
            await fleet.wait_for(lambda: len(listener.seen) == 50, 30, "the warm-up")
            rss_before = rss_kib(server.pid)

            stalled, stalled_port = await open_stalled(server.ws_url, slow.token)
            await fleet.wait_for(lambda: tcp_state(server.port, stalled_port) is not None, 5, "tcp")
            for _ in range(100):  # the server subscribes it once its token is checked
                if await live_connections(http) == 4:
                    break
                await asyncio.sleep(0.05)
            assert await live_connections(http) == 4

            # The second pair talks at a steady pace all along.
            async def chatter() -> None:
                for n in range(1_000_000):
                    cmid = f"c{n:06d}"
                    fleet.send(talker, [Outgoing(pair, cmid, f"{cmid} steady")])
                    await asyncio.sleep(1 / PAIR_RATE)

            chatting = asyncio.create_task(chatter())
            burst_started = time.monotonic()
            latencies_from = len(listener.latencies)
            fleet.send(
                sender,
                [
                    Outgoing(
                        to_slow,
                        f"s{n:06d}",
                        f"s{n:06d} " + ("long " * (LONG_TEXT // 5) if n < LONG else "short"),
                    )
                    for n in range(TOTAL)
                ],
            )
            rss_peak = rss_before
            closed_after: float | None = None  # seconds after the burst started
            deadline = time.monotonic() + sized(120, 800)
            while len(sender.answers) < TOTAL or (
                closed_after is None and time.monotonic() - burst_started < CLOSE_BOUND_SECONDS
            ):
                fleet.check()
                assert time.monotonic() < deadline, (len(sender.answers), closed_after)
                rss_peak = max(rss_peak, rss_kib(server.pid))
                if closed_after is None and tcp_state(server.port, stalled_port) != (
                    _TCP_ESTABLISHED
                ):
                    closed_after = round(time.monotonic() - burst_started, 1)
                await asyncio.sleep(0.05)
            burst_seconds = time.monotonic() - burst_started
            chatting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chatting
            connections_after_close = await live_connections(http)
            rss_after = rss_kib(server.pid)
            pair_latencies = listener.latencies[latencies_from:]

            # The slow device comes back as a normal client and catches up.
            stalled.transport.abort()
            slow.start()
            await fleet.wait_for(fleet.all_answered, 60, "every send answered")
            fleet.freeze()
            caught_up_from = time.monotonic()
            await fleet.wait_for(fleet.everything_delivered, sized(90, 600), "the catch-up")
            catch_up_seconds = time.monotonic() - caught_up_from
        finally:
            if stalled is not None:
                stalled.transport.abort()
            await http.aclose()
            try:
                await fleet.stop()
            finally:
                await server.stop()
        fleet.check()

    figures = fleet.figures()
    growth_mib = (rss_after - rss_before) / 1024
    peak_growth_mib = (rss_peak - rss_before) / 1024
    p99 = percentile(pair_latencies, 0.99)
    print(
        f"\n[slow consumer] to_slow={TOTAL} (long={LONG}x{LONG_TEXT} chars) "
        f"burst={burst_seconds:.1f}s server_closed_stalled_socket_after={closed_after}s "
        f"live_connections_after={connections_after_close} "
        f"rss_before={rss_before / 1024:.1f}MiB peak_growth={peak_growth_mib:.1f}MiB "
        f"growth_after={growth_mib:.1f}MiB (bound {RSS_BOUND_MIB}) "
        f"pair_messages={len(pair_latencies)} pair_p50={percentile(pair_latencies, 0.5):.3f}s "
        f"pair_p99={p99:.3f}s pair_max={max(pair_latencies):.3f}s (p99 bound "
        f"{P99_BOUND_SECONDS}s) catch_up={catch_up_seconds:.1f}s slow_order="
        f"{'ok' if slow.shown[to_slow] == sorted(slow.shown[to_slow]) else 'BROKEN'} "
        f"{figures.line()} seconds={time.monotonic() - started_at:.1f}"
    )
    assert closed_after is not None
    assert closed_after < CLOSE_BOUND_SECONDS
    assert connections_after_close == 3  # the stalled one is gone
    assert peak_growth_mib < RSS_BOUND_MIB
    assert p99 < P99_BOUND_SECONDS
    answered = sorted(answer["seq"] for answer in sender.answers.values())
    assert slow.shown[to_slow] == answered  # every one, in order, once
    figures.assert_zeros()
