"""What one event costs on the bus: ``python -m bench.bus``.

Two bus nodes in this process, a publishing one and a receiving one holding
the devices, on the real Redis and NATS servers of this machine. Each
scenario publishes committed batches as the group committer does and waits
until every entry reached its subscriber. Printed per delivered entry: this
process's CPU (both nodes: encoding, sending, receiving, decoding, handing
over) and the broker's CPU (Redis or NATS, from /proc), and the latency from
publish to delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pigeon.bus.nats import NatsBus
from pigeon.bus.redis import RedisBus
from pigeon.domain.chats import Message, MessageKind
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import LiveEvent
from pigeon.domain.ids import new_id

BUSES = {"redis": "redis://127.0.0.1:6379/3", "nats": "nats://127.0.0.1:4222"}
BROKERS = {"redis": "redis-server", "nats": "nats-server"}


class Device:
    """A subscriber that counts what reaches it."""

    def __init__(self, user_id: str, done: asyncio.Event, counter: list[int]) -> None:
        self.device_id = new_id()
        self.user_id = user_id
        self._done = done
        self._counter = counter

    def deliver(self, entries: Any) -> None:
        self._counter[0] -= len(entries)
        if self._counter[0] <= 0:
            self._done.set()

    def notify(self, event: LiveEvent) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def resync(self) -> None: ...


class Ignore:
    def unreached(self, entries: Any) -> None: ...


def broker_cpu(name: str) -> float:
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != name:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def message(chat_id: str) -> Message:
    now = datetime.now(UTC)
    return Message(new_id(), chat_id, 1, MessageKind.TEXT, "U", "D", "x" * 100, now)


async def run(kind: str, devices: int, batches: int, per_batch: int) -> dict[str, Any]:
    """``batches`` publishes of ``per_batch`` messages, each to ``devices`` devices."""
    url = BUSES[kind]
    make = RedisBus if kind == "redis" else NatsBus
    sender, receiver = (
        make(url, Ignore(), f"bench-a-{new_id()}"),
        make(url, Ignore(), f"bench-b-{new_id()}"),
    )
    await sender.start()
    await receiver.start()
    done, counter = asyncio.Event(), [0]
    targets = [Device(new_id(), done, counter) for _ in range(devices)]
    for device in targets:
        await receiver.attach(device)  # type: ignore[arg-type]
    await asyncio.sleep(0.5)
    expires = datetime.now(UTC) + timedelta(days=1)
    latencies = []
    cpu0, broker0 = time.process_time(), broker_cpu(BROKERS[kind])
    for _ in range(batches):
        counter[0] = devices * per_batch
        done.clear()
        batch = [message("C") for _ in range(per_batch)]
        entries = [
            InboxEntry(d.device_id, i + 1, expires, m, user_id=d.user_id)
            for d in targets
            for i, m in enumerate(batch)
        ]
        started = time.perf_counter()
        sender.publish(entries)
        await asyncio.wait_for(done.wait(), 10)
        latencies.append(time.perf_counter() - started)
    delivered = batches * per_batch * devices
    cpu = time.process_time() - cpu0
    broker = broker_cpu(BROKERS[kind]) - broker0
    await sender.close()
    await receiver.close()
    latencies.sort()
    return {
        "bus": kind,
        "devices": devices,
        "messages_per_publish": per_batch,
        "delivered": delivered,
        "pigeon_cpu_us_per_entry": round(1e6 * cpu / delivered, 1),
        "broker_cpu_us_per_entry": round(1e6 * broker / delivered, 1),
        "publish_to_delivery_ms_p50": round(1e3 * latencies[len(latencies) // 2], 2),
        "publish_to_delivery_ms_p99": round(1e3 * latencies[int(len(latencies) * 0.99)], 2),
    }


async def main(quick: bool) -> list[dict[str, Any]]:
    batches = 200 if quick else 2000
    results = []
    for kind in ("redis", "nats"):
        results.append(await run(kind, devices=1, batches=batches, per_batch=1))  # 1:1, one by one
        results.append(await run(kind, devices=1, batches=batches // 4, per_batch=16))  # a batch
        results.append(await run(kind, devices=100, batches=batches // 20, per_batch=1))  # a group
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    for row in asyncio.run(main(parser.parse_args().quick)):
        print(json.dumps(row))
