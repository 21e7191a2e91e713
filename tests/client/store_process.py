"""A client process with a LocalStore, for the tests that kill one with SIGKILL.

Run as ``python -m tests.client.store_process SERVER SESSION_FILE STORE PAUSE UNTIL``.
It prints ``shown <text>`` for every message ``events()`` hands it, and stops
(closing the connection, which acks) after the message whose text is UNTIL.
PAUSE is where it stops and waits to be killed:

* ``before-store``: a batch arrived; it prints ``storing`` and waits before
  writing it;
* ``after-store``: it wrote the batch, prints ``stored`` and waits before
  handing anything out;
* ``none``: it does not stop.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from pigeon.client import LocalStore, MessageEvent, PigeonClient, ReceiptEvent, Session


class PausingStore(LocalStore):
    def __init__(self, path: str, pause: str) -> None:
        super().__init__(path)
        self.pause = pause

    async def record(self, events: Sequence[MessageEvent | ReceiptEvent]) -> list[bool]:
        if self.pause == "before-store":
            await wait_to_be_killed("storing")
        news = await super().record(events)
        if self.pause == "after-store":
            await wait_to_be_killed("stored")
        return news


async def wait_to_be_killed(where: str) -> None:
    print(where, flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the test kills us before it answers
    raise SystemExit("not killed")


async def main(server: str, session: Session, store_path: str, pause: str, until: str) -> None:
    async with (
        PigeonClient(server) as client,
        PausingStore(store_path, pause) as store,
        client.connect(session, store=store) as conn,
    ):
        async for event in conn.events():
            if isinstance(event, MessageEvent):
                print(f"shown {event.text}", flush=True)
                if event.text == until:
                    return


if __name__ == "__main__":
    server, session_file, store_path, pause, until = sys.argv[1:6]
    with open(session_file, encoding="utf-8") as file:
        session = Session.from_dict(json.load(file))
    asyncio.run(main(server, session, store_path, pause, until))
