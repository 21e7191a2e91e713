"""Pigeon's benchmark harness (``make bench``): prints a table and writes JSON.

Scenarios, each on SQLite and PostgreSQL:
  throughput  50 pairs of devices sending as fast as the server allows (window 20)
  rate        a steady 1,000 messages/s across 50 pairs: latency
  fanout      one sender into a group of 100 members
  reads       a group of 100 all marking one message read: receipts sent
  idle        2,000 then 10,000 authenticated idle connections: memory per connection, slope
  catchup     one device offline while 10,000 messages arrive, then connects
and the same throughput and rate scenarios against a bare relay on the same stack;
also bench/ordinary.py's ordinary, signups and httpcost (ordinary load, issue 20),
nodes (bench/nodes.py): two nodes against one, on PostgreSQL with Redis and NATS,
storm (bench/storm.py): 10,000 devices connecting at once while 20 connected ones ask, and
broadcast (bench/broadcast.py): transactions for one send to a list of 256.

    python -m bench.harness [--databases sqlite,postgresql] [--scenarios ...] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ordinary
from bench.common import (
    Client,
    PigeonServer,
    Workspace,
    fsync_latency_ms,
    latency_ms,
    pin_generator,
    raise_file_limit,
    seed,
    seed_chats,
    start_profiler,
    wait_healthy,
)

RESULTS = Path(__file__).parent / "results"


def machine_steal() -> float:
    """Seconds of CPU the hypervisor gave other guests, averaged over this machine's CPUs."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") / (os.cpu_count() or 1)


class Meter:
    """Wall time and both sides' CPU over a measured span."""

    def __init__(self, server_pid: int, label: str = "") -> None:
        from bench.common import process_cpu_seconds

        self._cpu = lambda: process_cpu_seconds(server_pid)
        self._profiler = start_profiler(server_pid, label)
        self.started = time.perf_counter()
        self._server = self._cpu()
        self._self = time.process_time()
        self._steal = machine_steal()

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.started
        if self._profiler is not None:
            self._profiler.send_signal(signal.SIGINT)
            self._profiler.wait(30)
        return {
            "seconds": round(elapsed, 2),
            "server_cpu_percent": round(100 * (self._cpu() - self._server) / elapsed),
            "generator_cpu_percent": round(100 * (time.process_time() - self._self) / elapsed),
            "_server_cpu_seconds": self._cpu() - self._server,
            # CPU the hypervisor gave to other guests: high values mean a noisy run.
            "steal_percent": round(100 * (machine_steal() - self._steal) / elapsed, 1),
        }


async def pump(client: Client, chat_id: str, window: int, deadline: float) -> int:
    sent = 0

    async def lane() -> None:
        nonlocal sent
        while time.perf_counter() < deadline:
            await client.send_text(chat_id)
            sent += 1

    await asyncio.gather(*(lane() for _ in range(window)))
    return sent


async def paced(
    client: Client, chat_id: str, per_second: float, deadline: float, phase: float = 0.0
) -> int:
    """Open loop: sends on a fixed schedule whatever the answers do.

    ``phase`` (a fraction of the interval) offsets this sender's schedule, so
    that many senders together send at an even overall rate, not in bursts.
    """
    interval, sent, pending = 1 / per_second, 0, set()
    next_at = time.perf_counter() + phase * interval
    while next_at < deadline:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        task = asyncio.create_task(client.send_text(chat_id))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += 1
        next_at += interval
    if pending:
        await asyncio.wait(pending, timeout=30)
    return sent


async def pairs(
    server: PigeonServer, database_url: str, count: int
) -> list[tuple[Client, Client, str]]:
    """``count`` 1:1 chats on one server: (sender, recipient, chat id)."""
    return await open_pairs([server], database_url, count)


async def open_pairs(
    servers: Sequence[PigeonServer], database_url: str, count: int
) -> list[tuple[Client, Client, str]]:
    """``count`` 1:1 chats; with two nodes the sender and the recipient are on different ones."""
    users = await seed(database_url, count * 2)
    chats = await seed_chats(
        database_url, [(users[2 * i].user_id, users[2 * i + 1].user_id) for i in range(count)], True
    )
    result = []
    for i, chat_id in enumerate(chats):
        home, away = servers[i % len(servers)], servers[(i + 1) % len(servers)]
        sender = await Client.open(home.ws_url, users[2 * i].devices[0][1])
        receiver = await Client.open(away.ws_url, users[2 * i + 1].devices[0][1])
        result.append((sender, receiver, chat_id))
    return result


async def relay_pairs(port: int, count: int) -> list[tuple[Client, Client, str]]:
    from websockets.asyncio.client import connect

    result = []
    for i in range(count):
        a = await connect(f"ws://127.0.0.1:{port}/v1/ws?me=a{i}", compression=None, max_queue=None)
        b = await connect(f"ws://127.0.0.1:{port}/v1/ws?me=b{i}", compression=None, max_queue=None)
        result.append((Client(a), Client(b), f"b{i}"))
    return result


def summary(
    clients: list[tuple[Client, Client, str]], sent: int, meter: dict[str, float]
) -> dict[str, Any]:
    latencies = [x for _, receiver, _ in clients for x in receiver.latencies]
    delivered = sum(receiver.received for _, receiver, _ in clients)
    return {
        "sent": sent,
        "delivered": delivered,
        "messages_per_second": round(delivered / meter["seconds"]),
        **latency_ms(latencies),
        "server_cpu_us_per_message": round(
            1e6 * meter["_server_cpu_seconds"] / max(delivered, 1), 1
        ),
        **{k: v for k, v in meter.items() if not k.startswith("_")},
    }


async def close_all(clients: list[tuple[Client, Client, str]]) -> None:
    for sender, receiver, _ in clients:
        await sender.close()
        await receiver.close()


async def run_pairs_scenario(
    clients: list[tuple[Client, Client, str]], pid: int, mode: str, seconds: float, label: str
) -> dict[str, Any]:
    meter = Meter(pid, label)
    deadline = time.perf_counter() + seconds
    if mode == "throughput":
        counts = await asyncio.gather(*(pump(s, c, 20, deadline) for s, _, c in clients))
    else:
        per_pair, n = 1000 / len(clients), len(clients)
        counts = await asyncio.gather(
            *(paced(s, c, per_pair, deadline, i / n) for i, (s, _, c) in enumerate(clients))
        )
    await asyncio.sleep(0.5)  # the last deliveries
    return summary(clients, sum(counts), meter.stop())


async def scenario_pairs(kind: str, mode: str, seconds: float, n_pairs: int) -> dict[str, Any]:
    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url)
        server.start()
        try:
            await server.wait_ready()
            clients = await pairs(server, ws.database.url, n_pairs)
            await asyncio.sleep(0.5)
            result = await run_pairs_scenario(clients, server.pid, mode, seconds, f"{kind}/{mode}")
            await close_all(clients)
            return result
        finally:
            server.stop()


@contextlib.asynccontextmanager
async def relay_process() -> AsyncIterator[tuple[int, int]]:
    """``bench/relay.py`` running on the server's CPU: its pid and port."""
    from bench.common import free_port

    port = free_port()
    command = [sys.executable, "-m", "bench.relay", str(port)]
    if (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(command, cwd=Path(__file__).parent.parent)
    try:
        await wait_healthy(f"http://127.0.0.1:{port}")
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(10)


async def scenario_relay(mode: str, seconds: float, n_pairs: int) -> dict[str, Any]:
    async with relay_process() as (pid, port):
        clients = await relay_pairs(port, n_pairs)
        result = await run_pairs_scenario(clients, pid, mode, seconds, f"relay/{mode}")
        await close_all(clients)
        return result


async def group_online(
    server: PigeonServer, ws: Workspace, members: int
) -> tuple[str, list[Client]]:
    """A group of ``members`` users, each with one device connected."""
    users = await seed(ws.database.url, members)
    [chat_id] = await seed_chats(ws.database.url, [[u.user_id for u in users]], False)
    return chat_id, [await Client.open(server.ws_url, u.devices[0][1]) for u in users]


async def scenario_fanout(kind: str, seconds: float, members: int) -> dict[str, Any]:
    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url)
        server.start()
        try:
            await server.wait_ready()
            chat_id, clients = await group_online(server, ws, members)
            await asyncio.sleep(0.5)
            meter = Meter(server.pid, f"{kind}/fanout")
            sent = await pump(clients[0], chat_id, 5, time.perf_counter() + seconds)
            await asyncio.sleep(1.0)
            measured = meter.stop()
            latencies = [x for c in clients[1:] for x in c.latencies]
            deliveries = sum(c.received for c in clients[1:])
            for client in clients:
                await client.close()
            return {
                "members": members,
                "sent": sent,
                "deliveries": deliveries,
                "deliveries_per_second": round(deliveries / measured["seconds"]),
                **latency_ms(latencies),
                **{k: v for k, v in measured.items() if not k.startswith("_")},
            }
        finally:
            server.stop()


async def settled(count: Callable[[], int], quiet: float = 1.0, limit: float = 60) -> int:
    """Wait until ``count()`` stops moving for ``quiet`` seconds (bounded)."""
    deadline = time.perf_counter() + limit
    last, still_since = count(), time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
        now = count()
        if now != last:
            last, still_since = now, time.perf_counter()
        elif time.perf_counter() - still_since >= quiet:
            break
    return last


async def scenario_reads(kind: str, members: int, rounds: int) -> dict[str, Any]:
    """Read receipts in a group: every member marks each new message read.

    WhatsApp's rule (issue 14) tells only the message's sender and the reader's
    own other devices; telling every member costs members x members events.
    """
    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url)
        server.start()
        try:
            await server.wait_ready()
            chat_id, clients = await group_online(server, ws, members)
            readers = clients[1:]
            await asyncio.sleep(0.5)
            meter = Meter(server.pid, f"{kind}/reads")
            started = time.perf_counter()
            for _ in range(rounds):
                answer = await clients[0].send_text(chat_id)
                seq = answer["data"]["seq"]
                await settled(lambda: sum(c.received for c in readers), quiet=0.3)
                marks = [c.call("markRead", {"chatId": chat_id, "upToSeq": seq}) for c in readers]
                await asyncio.gather(*marks)
            receipts = await settled(lambda: sum(c.read_receipts for c in clients))
            elapsed = time.perf_counter() - started
            measured = meter.stop()
            for client in clients:
                await client.close()
            return {
                "members": members,
                "marks": rounds * len(readers),
                "read_receipts_delivered": receipts,
                "receipts_per_mark": round(receipts / (rounds * len(readers)), 2),
                "server_cpu_ms_per_mark": round(
                    1000 * measured["_server_cpu_seconds"] / (rounds * len(readers)), 2
                ),
                "seconds": round(elapsed, 2),
                **{k: v for k, v in measured.items() if not k.startswith("_")},
            }
        finally:
            server.stop()


async def open_idle(server: PigeonServer, users: list[Any]) -> tuple[list[Client], int]:
    clients, failed = [], 0
    for start in range(0, len(users), 200):
        opened = await asyncio.gather(
            *(Client.open(server.ws_url, u.devices[0][1]) for u in users[start : start + 200]),
            return_exceptions=True,
        )
        for item in opened:
            if isinstance(item, BaseException):
                failed += 1
            else:
                clients.append(item)
    return clients, failed


async def scenario_idle(kind: str, connections: int) -> dict[str, Any]:
    """Server memory with a fifth of ``connections`` open, then all: totals and the slope."""
    raise_file_limit()
    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url)
        server.start()
        try:
            await server.wait_ready()
            users = await seed(ws.database.url, connections)
            await asyncio.sleep(1.0)
            before = server.rss_kib()
            started = time.perf_counter()
            first, failed_first = await open_idle(server, users[: connections // 5])
            await asyncio.sleep(3.0)
            middle = server.rss_kib()
            second, failed_second = await open_idle(server, users[connections // 5 :])
            opened_in = time.perf_counter() - started
            await asyncio.sleep(3.0)
            after = server.rss_kib()
            clients = first + second
            for client in clients:
                await client.close()
            return {
                "connections": len(clients),
                "failed": failed_first + failed_second,
                "opened_in_seconds": round(opened_in, 1),
                "server_rss_mib_before": round(before / 1024, 1),
                "server_rss_mib_at_first": round(middle / 1024, 1),
                "server_rss_mib_after": round(after / 1024, 1),
                # Totals: everything the connections brought, caches warmed by the first included.
                "first_connections": len(first),
                "kib_per_connection_at_first": round((middle - before) / max(len(first), 1), 1),
                "kib_per_connection": round((after - before) / max(len(clients), 1), 1),
                # The slope: what one more connection costs once those caches are warm.
                "kib_per_added_connection": round((after - middle) / max(len(second), 1), 1),
            }
        finally:
            server.stop()


async def scenario_catchup(kind: str, messages: int) -> dict[str, Any]:
    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url, ws_max_in_flight=256)
        server.start()
        try:
            await server.wait_ready()
            users = await seed(ws.database.url, 2)
            [chat_id] = await seed_chats(
                ws.database.url, [[users[0].user_id, users[1].user_id]], True
            )
            sender = await Client.open(server.ws_url, users[0].devices[0][1])
            sent = 0

            async def lane() -> None:
                nonlocal sent
                while sent < messages:
                    sent += 1
                    await sender.send_text(chat_id)

            await asyncio.gather(*(lane() for _ in range(20)))
            await sender.close()
            meter = Meter(server.pid, f"{kind}/fanout")
            receiver = await Client.open(server.ws_url, users[1].devices[0][1])
            await asyncio.wait_for(receiver.drained.wait(), 600)
            measured = meter.stop()
            await receiver.close()
            return {
                "messages": sent,
                "received": receiver.received,
                "drain_seconds": measured["seconds"],
                "messages_per_second": round(receiver.received / measured["seconds"]),
                "server_cpu_percent": measured["server_cpu_percent"],
            }
        finally:
            server.stop()


# The targets the figures are read against (docs/performance.md), per database.
TARGETS = {
    "throughput ratio to the relay": ("throughput", "ratio_to_relay", ">=", 0.5),
    "p99 at 1,000 msg/s (ms)": ("rate", "p99_ms", "<", 20.0),
    "KiB per idle connection (2,000)": ("idle", "kib_per_connection_at_first", "<=", 20.0),
    "KiB per idle connection (10,000)": ("idle", "kib_per_connection", "<=", 20.0),
    "KiB per added idle connection": ("idle", "kib_per_added_connection", "<=", 20.0),
    "storm: all drained (s)": ("storm", "all_drained_seconds", "<", 10.0),
    "storm: commands' p99 (ms)": ("storm", "during_p99_ms", "<", 500.0),
}


def targets(results: dict[str, Any], databases: list[str]) -> list[str]:
    lines = []
    for kind in databases:
        for label, (scenario, key, op, bound) in TARGETS.items():
            value = results["scenarios"].get(f"{kind}/{scenario}", {}).get(key)
            if value is None:
                continue
            met = value >= bound if op == ">=" else value < bound if op == "<" else value <= bound
            verdict = "met" if met else "MISSED"
            lines.append(f"{kind:<11} {label:<32} {value:>8} (target {op} {bound}): {verdict}")
    return lines


def print_table(results: dict[str, Any]) -> None:
    fsync = results["machine"].get("fsync")
    if fsync:
        print(f"{'disk fsync':<28} " + ", ".join(f"{k}={v}" for k, v in fsync.items()))
    for name, value in results["scenarios"].items():
        figures = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{name:<28} {figures}")
    print()
    for line in results.get("targets", []):
        print(line)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    pin_generator()
    quick = args.quick
    seconds = 3 if quick else 10
    n_pairs = 10 if quick else 50
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(sys.argv),
        "scenarios": {},
    }
    # The disk's fsync tail, measured before the load: it bounds the latency tail.
    results["machine"]["fsync"] = fsync_latency_ms(2 if quick else 5)
    print(f"fsync of an 8 KiB append: {results['machine']['fsync']}", flush=True)
    wanted = args.scenarios.split(",")
    out = results["scenarios"]
    for mode in ("throughput", "rate"):
        if mode in wanted:
            out[f"relay/{mode}"] = await scenario_relay(mode, seconds, n_pairs)
            print(f"relay/{mode}: {out[f'relay/{mode}']}", flush=True)
    if "ordinary" in wanted:
        out["relay/ordinary"] = await ordinary.scenario_relay_ordinary(seconds)
        print(f"relay/ordinary: {out['relay/ordinary']}", flush=True)
    for kind in args.databases.split(","):
        for mode in ("throughput", "rate"):
            if mode in wanted:
                out[f"{kind}/{mode}"] = await scenario_pairs(kind, mode, seconds, n_pairs)
                print(f"{kind}/{mode}: {out[f'{kind}/{mode}']}", flush=True)
        if "fanout" in wanted:
            out[f"{kind}/fanout"] = await scenario_fanout(kind, seconds, 20 if quick else 100)
            print(f"{kind}/fanout: {out[f'{kind}/fanout']}", flush=True)
        if "reads" in wanted:
            out[f"{kind}/reads"] = await scenario_reads(kind, 20 if quick else 100, 5)
            print(f"{kind}/reads: {out[f'{kind}/reads']}", flush=True)
        if "idle" in wanted:
            out[f"{kind}/idle"] = await scenario_idle(kind, 500 if quick else 10_000)
            print(f"{kind}/idle: {out[f'{kind}/idle']}", flush=True)
        if "catchup" in wanted:
            out[f"{kind}/catchup"] = await scenario_catchup(kind, 1000 if quick else 10_000)
            print(f"{kind}/catchup: {out[f'{kind}/catchup']}", flush=True)
        out.update(await ordinary.run(kind, wanted, quick))  # ordinary load (issue 20)
        if "broadcast" in wanted:  # bench/broadcast.py: transactions per list of 256
            from bench.broadcast import run as broadcast_run

            for row in await broadcast_run(kind, 16 if quick else 256):
                out[f"{kind}/broadcast/{row['broadcast'].split()[0]}"] = row
                print(f"{kind}/broadcast: {row}", flush=True)
        if "storm" in wanted:  # bench/storm.py: 10,000 devices reconnecting at once
            from bench.storm import scenario_storm

            out[f"{kind}/storm"] = await scenario_storm(kind, 1000 if quick else 10_000)
            print(f"{kind}/storm: {out[f'{kind}/storm']}", flush=True)
    if "nodes" in wanted:  # bench/nodes.py: two nodes against one (PostgreSQL)
        from bench.nodes import scenario_nodes

        out.update(await scenario_nodes(quick))
    for kind in args.databases.split(","):
        relay, pigeon = out.get("relay/throughput"), out.get(f"{kind}/throughput")
        if relay and pigeon:
            pigeon["ratio_to_relay"] = round(
                pigeon["messages_per_second"] / max(relay["messages_per_second"], 1), 2
            )
    ordinary.compare_to_relay(out, args.databases.split(","))
    results["targets"] = targets(results, args.databases.split(","))
    results["targets"] += ordinary.targets(out, args.databases.split(","))
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--scenarios",
        default=",".join(
            [
                "throughput,rate,fanout,reads,idle,catchup",
                *ordinary.SCENARIOS,
                "broadcast,nodes,storm",
            ]
        ),
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    import uvloop

    results = uvloop.run(main(args))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print_table(results)


if __name__ == "__main__":
    cli()
