"""Two Pigeon nodes against one, in the same run: ``python -m bench.nodes``.

PostgreSQL throughout. One node runs with its bus in memory (the
one-process default) on CPU 0; two nodes run on the Redis bus and then on
the NATS bus, node A on CPU 0 and node B on CPU 1. Traffic is 1:1 and, with
two nodes, always cross-node: each pair's sender is on one node and its
recipient on the other (half the pairs one way, half the other, so both
nodes do the same work). For each setup: saturated throughput (window 20
per sender) and latency at a steady 1,000 msg/s, the servers' CPU per
message, and the broker's (redis-server or nats-server, from /proc, minus
what it spent while the run was idle: other work on this machine uses the
same brokers).

The machine has two cores: the load generator, PostgreSQL and the broker
are not pinned and share them with the nodes. With one node they have a core
to themselves; with two they take from the nodes, so the ratio understates
what two machines would do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from typing import Any

from bench.bus import BROKERS, broker_cpu
from bench.common import (
    Client,
    PigeonServer,
    Workspace,
    latency_ms,
    process_cpu_seconds,
    raise_file_limit,
    settle,
)
from bench.harness import open_pairs, paced, pump

# Database numbers of their own, so the tests' buses (db 3) are not disturbed.
BUSES = {"memory": None, "redis": "redis://127.0.0.1:6379/6", "nats": "nats://127.0.0.1:4222"}
RATE = 1000


class PinnedServer(PigeonServer):
    """``pigeon serve`` pinned to a CPU of its own choosing."""

    def __init__(self, cpu: int, *args: Any, **settings: Any) -> None:
        super().__init__(*args, **settings)
        self.cpu = cpu

    def start(self) -> None:
        command = list(self.command)
        if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
            command = ["taskset", "-c", str(self.cpu), *command]
        self.process = subprocess.Popen(command, env=self.env, preexec_fn=raise_file_limit)


class Span:
    """Wall time and CPU of the nodes and the broker over a measured span."""

    def __init__(self, pids: list[int], broker: str | None, idle_rate: float) -> None:
        self._pids, self._broker, self._idle_rate = pids, broker, idle_rate
        self.started = time.perf_counter()
        self._servers = sum(process_cpu_seconds(p) for p in pids)
        self._broker0 = broker_cpu(broker) if broker else 0.0

    def stop(self, delivered: int) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        servers = sum(process_cpu_seconds(p) for p in self._pids) - self._servers
        result = {
            "seconds": round(elapsed, 2),
            "servers_cpu_percent": round(100 * servers / elapsed),
            "servers_cpu_us_per_message": round(1e6 * servers / max(delivered, 1), 1),
        }
        if self._broker:
            broker = broker_cpu(self._broker) - self._broker0 - self._idle_rate * elapsed
            result["broker_cpu_percent"] = round(100 * broker / elapsed, 1)
            result["broker_cpu_us_per_message"] = round(1e6 * max(broker, 0) / max(delivered, 1), 1)
        return result


async def broker_idle_rate(broker: str | None, seconds: float = 2.0) -> float:
    """The broker's CPU per second while this run sends nothing (others' work, heartbeats)."""
    if broker is None:
        return 0.0
    before = broker_cpu(broker)
    await asyncio.sleep(seconds)
    return (broker_cpu(broker) - before) / seconds


async def measure(
    clients: list[tuple[Client, Client, str]],
    servers: list[PigeonServer],
    bus: str,
    mode: str,
    seconds: float,
) -> dict[str, Any]:
    broker = BROKERS.get(bus)
    await settle([server.url for server in servers])  # the span before is not measured
    idle = await broker_idle_rate(broker)
    for _, receiver, _ in clients:
        receiver.latencies.clear()
        receiver.received = 0
    span = Span([s.pid for s in servers], broker, idle)
    deadline = time.perf_counter() + seconds
    if mode == "throughput":
        counts = await asyncio.gather(*(pump(s, c, 20, deadline) for s, _, c in clients))
    else:
        n = len(clients)
        counts = await asyncio.gather(
            *(paced(s, c, RATE / n, deadline, i / n) for i, (s, _, c) in enumerate(clients))
        )
    await asyncio.sleep(0.5)  # the last deliveries
    delivered = sum(receiver.received for _, receiver, _ in clients)
    measured = span.stop(delivered)
    return {
        "sent": sum(counts),
        "delivered": delivered,
        "messages_per_second": round(delivered / measured["seconds"]),
        **latency_ms([x for _, receiver, _ in clients for x in receiver.latencies]),
        **measured,
    }


async def setup(bus: str, nodes: int, seconds: float, n_pairs: int) -> dict[str, Any]:
    """One setup's throughput and steady-rate figures, on a database of its own."""
    async with Workspace("postgresql") as ws:
        settings = {"bus_url": BUSES[bus]} if BUSES[bus] else {}
        url = ws.database.url
        servers = [PinnedServer(cpu, ws.data_dir, url, **settings) for cpu in range(nodes)]
        for server in servers:
            server.start()
        try:
            for server in servers:
                await server.wait_ready()
            clients = await open_pairs(servers, ws.database.url, n_pairs)
            await asyncio.sleep(0.5)
            result = {
                mode: await measure(clients, servers, bus, mode, seconds)
                for mode in ("throughput", "rate")
            }
            for sender, receiver, _ in clients:
                await sender.close()
                await receiver.close()
            return result
        finally:
            for server in servers:
                server.stop()


async def scenario_nodes(quick: bool) -> dict[str, Any]:
    """Every setup, then the ratios and the bus's cost against the one-node figures."""
    seconds, n_pairs = (3, 10) if quick else (10, 50)
    # Unpinned: the generator takes what the nodes leave on either core.
    affinity = os.sched_getaffinity(0)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    try:
        out: dict[str, Any] = {}
        for bus, nodes in (("memory", 1), ("redis", 2), ("nats", 2)):
            figures = await setup(bus, nodes, seconds, n_pairs)
            for mode, value in figures.items():
                out[f"nodes/{nodes}x{bus}/{mode}"] = value
                print(f"nodes/{nodes}x{bus}/{mode}: {value}", flush=True)
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, affinity)
    one = out["nodes/1xmemory/throughput"]
    for bus in ("redis", "nats"):
        two = out[f"nodes/2x{bus}/throughput"]
        two["ratio_to_one_node"] = round(
            two["messages_per_second"] / max(one["messages_per_second"], 1), 2
        )
        # What the bus adds to the nodes' own CPU per message, at saturation.
        two["bus_cpu_us_per_message_in_nodes"] = round(
            two["servers_cpu_us_per_message"] - one["servers_cpu_us_per_message"], 1
        )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    import uvloop

    results = uvloop.run(scenario_nodes(parser.parse_args().quick))
    print(json.dumps(results, indent=2))
