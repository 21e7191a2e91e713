"""The database work of one device's connection, in-process: ``python -m bench.handshake``.

What a reconnect storm costs the database layer per device, without sockets:
the token lookup (``AccountService.authenticate``), the presence announcement
(contacts and who may see the device online) and the first page of queued
events, each in its own read-only unit of work, as the gateway runs them.
Printed: CPU per device in all and per step, on each database. Half the
devices share a 1:1 chat, so the announcement has someone to tell.
"""

from __future__ import annotations

import argparse
import time

import uvloop

from bench.common import Workspace, seed, seed_chats
from pigeon.bootstrap import build
from pigeon.config import Settings

WARM_UP = 50


async def measure(kind: str, devices: int) -> dict[str, float]:
    async with Workspace(kind) as ws:
        container = build(Settings(database_url=ws.database.url, data_dir=ws.data_dir))
        await container.start()
        try:
            users = await seed(ws.database.url, devices)
            pairs = [(users[i].user_id, users[i + 1].user_id) for i in range(0, devices - 1, 2)]
            await seed_chats(ws.database.url, pairs, True)
            tokens = [u.devices[0][1] for u in users]
            for token in tokens[:WARM_UP]:
                await container.accounts.authenticate(token)
            spent = {"authenticate": 0.0, "announce": 0.0, "first_page": 0.0}
            for token in tokens:
                started = time.process_time()
                principal = await container.accounts.authenticate(token)
                authenticated = time.process_time()
                await container.presence.announce(principal, online=True)
                announced = time.process_time()
                await container.messaging.pending(principal.device_id, 0, 256)
                spent["authenticate"] += authenticated - started
                spent["announce"] += announced - authenticated
                spent["first_page"] += time.process_time() - announced
        finally:
            await container.close()
    per_device = {f"{step}_us": round(1e6 * s / devices) for step, s in spent.items()}
    return {"cpu_us_per_device": sum(per_device.values()), **per_device}


async def main(databases: list[str], devices: int) -> None:
    for kind in databases:
        print(f"{kind}/handshake: {await measure(kind, devices)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--devices", type=int, default=2000)
    args = parser.parse_args()
    uvloop.run(main(args.databases.split(","), args.devices))
