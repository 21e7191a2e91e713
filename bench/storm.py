"""A reconnect storm on one node: ``python -m bench.storm [--databases ...] [--quick]``.

What a node's death or a deploy means for the nodes that stay: 10,000
devices (registered beforehand: registration is not measured) connect
within a few seconds, while 20 devices that were already connected keep
asking for their chats (``getChats``, each every 100 ms). Printed: the
time from the storm's first connection until every one of the 10,000 got
``drained``, and the connected devices' command latency before and during
the storm (until the last ``drained``).

The 20 connected devices run in a process of their own (``commander``), so
their latency is the server's and not the wait of a generator busy opening
10,000 sockets. The storming devices are bare sockets (``StormDevice``), so
the generator, which shares CPU 1 with the commander, is not the limit; the
server has CPU 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time
import urllib.parse
from typing import Any

from bench.common import (
    Client,
    PigeonServer,
    Workspace,
    latency_ms,
    pin_generator,
    postgres_cluster_cpu_seconds,
    process_cpu_seconds,
    raise_file_limit,
    seed,
    seed_chats,
    start_profiler,
)
from bench.ordinary import PostgresBackends

CONNECTED = 20
COMMAND_INTERVAL = 0.1  # seconds between one connected device's commands
RAMP_SECONDS = 2.0  # the storm's connections start evenly over this span


async def commander(ws_url: str) -> None:
    """The connected devices: tokens on stdin, "ready" on stdout, commands until "stop".

    Then prints one JSON list of ``[started, seconds]`` per command, on the
    system's monotonic clock (the parent's clock too).
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tokens = json.loads(await reader.readline())
    clients = [await Client.open(ws_url, token) for token in tokens]
    timings: list[tuple[float, float]] = []
    stopped = asyncio.Event()

    async def ask(client: Client) -> None:
        while not stopped.is_set():
            started = time.monotonic()
            answer = await client.call("getChats", {})
            # A refused command (unavailable: no database connection came free) counts as
            # infinitely slow.
            took = time.monotonic() - started if answer.get("ok") else float("inf")
            timings.append((started, took))
            await asyncio.sleep(COMMAND_INTERVAL)

    print("ready", flush=True)
    askers = [asyncio.create_task(ask(c)) for c in clients]
    await reader.readline()
    stopped.set()
    await asyncio.gather(*askers)
    print(json.dumps(timings), flush=True)
    for client in clients:
        await client.close()


class StormDevice(asyncio.Protocol):
    """One storming device's socket, as cheap for the generator as a socket can be.

    The storm measures the server, so the generator must not be its limit:
    a ``websockets`` client costs ~0.7 ms of the generator's CPU to open, more
    than the server spends on the device, and with 10,000 opening at once the
    generator's loop round-robins over all of them, so none finished in the
    first 5 s. This one writes its upgrade request in one ``write`` and reads
    the server's frames (never masked, never fragmented by Pigeon) until
    ``drained``; it does not check the handshake's accept key.
    """

    def __init__(self, request: bytes, done: asyncio.Future[bool]) -> None:
        self._request = request
        self._done = done
        self._buffer = bytearray()
        self._upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._buffer.startswith(b"HTTP/1.1 101"):
                self._finish(False)
                return
            del self._buffer[: end + 4]
            self._upgraded = True
        self._read_frames()

    def _read_frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2 and not self._done.done():
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(buffer[2:4]), 4
            elif length == 127:
                length, start = int.from_bytes(buffer[2:10]), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 0x8:  # closed before drained: refused
                self._finish(False)
            elif opcode == 0x1 and json.loads(payload).get("event") == "drained":
                self._finish(True)

    def _finish(self, drained: bool) -> None:
        if not self._done.done():
            self._done.set_result(drained)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(False)


def upgrade_request(parsed: urllib.parse.SplitResult, token: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


async def connect_one(url: str, token: str, at: float) -> float | None:
    """Connects at ``at`` (monotonic); the moment ``drained`` came (None: it failed)."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()
    parsed = urllib.parse.urlsplit(url)
    try:
        transport, _ = await loop.create_connection(
            lambda: StormDevice(upgrade_request(parsed, token), done),
            parsed.hostname or "127.0.0.1",
            parsed.port or 80,
        )
        STORM_SOCKETS.append(transport)
        drained = await asyncio.wait_for(done, 300)
    except (OSError, TimeoutError):  # refused, reset, timed out: counted, not raised
        return None
    return time.monotonic() if drained else None


STORM_SOCKETS: list[asyncio.BaseTransport] = []


async def scenario_storm(kind: str, devices: int, **settings: Any) -> dict[str, Any]:
    raise_file_limit()
    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url, **settings)
        server.start()
        commanding = None
        try:
            await server.wait_ready()
            users = await seed(ws.database.url, devices + CONNECTED)
            connected, storming = users[:CONNECTED], users[CONNECTED:]
            # Each connected device is in a few chats, so getChats reads something.
            await seed_chats(
                ws.database.url,
                [
                    (u.user_id, storming[i * 3 + j].user_id)
                    for i, u in enumerate(connected)
                    for j in range(3)
                ],
                True,
            )
            commanding = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.storm", "--commander", server.ws_url,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,  # the timings come back as one line
            )  # fmt: skip
            assert commanding.stdin is not None
            assert commanding.stdout is not None
            commanding.stdin.write(
                json.dumps([u.devices[0][1] for u in connected]).encode() + b"\n"
            )
            await commanding.stdin.drain()
            assert (await commanding.stdout.readline()).strip() == b"ready"
            await asyncio.sleep(2.0)  # the commands' latency before the storm
            started = time.monotonic()
            server_cpu, generator_cpu = process_cpu_seconds(server.pid), time.process_time()
            profiler = start_profiler(server.pid, f"{kind}-storm")
            backends = PostgresBackends(ws.database.name) if kind == "postgresql" else None
            if backends:
                await backends.start()
                postgres_cpu = postgres_cluster_cpu_seconds()
            step = RAMP_SECONDS / max(devices, 1)
            drained_at = await asyncio.gather(
                *(
                    connect_one(server.ws_url, u.devices[0][1], started + i * step)
                    for i, u in enumerate(storming)
                )
            )
            drained = sorted(t for t in drained_at if t is not None)
            ended = drained[-1] if drained else time.monotonic()
            server_cpu = process_cpu_seconds(server.pid) - server_cpu
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
            if backends:
                # The whole cluster's: the pool's overflow connections close as they return.
                postgres_cpu = postgres_cluster_cpu_seconds() - postgres_cpu
                sessions = await backends.sessions_opened()
            generator_cpu = time.process_time() - generator_cpu
            await asyncio.sleep(1.0)
            commanding.stdin.write(b"stop\n")
            await commanding.stdin.drain()
            timings = json.loads(await commanding.stdout.readline())
            await commanding.wait()
            before = [s for t, s in timings if t < started]
            during = [s for t, s in timings if started <= t <= ended]
            refused = sum(1 for _, s in timings if s == float("inf"))
            result = {
                "devices": devices,
                "all_drained_seconds": round(ended - started, 2),
                "failed": len(drained_at) - len(drained),
                "half_drained_seconds": round(drained[len(drained) // 2] - started, 2),
                # Until the last drained: near 1.0 that side's core was the limit.
                "server_cpu_share": round(server_cpu / max(ended - started, 1e-9), 2),
                "generator_cpu_share": round(generator_cpu / max(ended - started, 1e-9), 2),
                "server_cpu_ms_per_device": round(server_cpu * 1000 / max(len(drained), 1), 2),
                **(
                    {
                        "postgres_cpu_ms_per_device": round(
                            postgres_cpu * 1000 / max(len(drained), 1), 2
                        ),
                        "postgres_sessions_opened": sessions,
                    }
                    if backends
                    else {}
                ),
                "commands_during": len(during),
                "commands_refused": refused,
                **{f"before_{k}": v for k, v in latency_ms(before).items() if k != "max_ms"},
                **{f"during_{k}": v for k, v in latency_ms(during).items()},
            }
            for transport in STORM_SOCKETS:
                transport.close()
            STORM_SOCKETS.clear()
            return result
        finally:
            if commanding is not None and commanding.returncode is None:
                commanding.kill()
            server.stop()


async def main(databases: list[str], quick: bool, handshakes: int | None) -> dict[str, Any]:
    pin_generator()
    out = {}
    settings = {} if handshakes is None else {"ws_max_concurrent_handshakes": handshakes}
    for kind in databases:
        out[f"{kind}/storm"] = await scenario_storm(kind, 1000 if quick else 10_000, **settings)
        print(f"{kind}/storm: {out[f'{kind}/storm']}", flush=True)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="1,000 devices, for a smoke run")
    parser.add_argument("--handshakes", type=int, help="PIGEON_WS_MAX_CONCURRENT_HANDSHAKES")
    parser.add_argument("--commander", metavar="WS_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.commander:
        uvloop.run(commander(args.commander))
    else:
        uvloop.run(main(args.databases.split(","), args.quick, args.handshakes))
