"""Test doubles and helpers shared by the test suite."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from pigeon.domain.ids import new_id
from pigeon.domain.models import Device, Platform
from pigeon.storage import migrate
from pigeon.storage.engine import create_engine
from tests.live import WsClient


async def migrated_sqlite(path: Path) -> str:
    """The URL of a new SQLite database at ``path``, migrated to the latest schema."""
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return url


def make_device(
    user_id: str,
    name: str = "phone",
    at: datetime = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC),
) -> Device:
    """A device row as registration makes one, seen at ``at``, with unique token hashes."""
    token = new_id().lower()
    return Device(
        id=new_id(),
        user_id=user_id,
        name=name,
        platform=Platform.ANDROID,
        created_at=at,
        last_seen_at=at,
        access_token_hash=f"a-{token}",
        access_expires_at=at + timedelta(days=1),
        refresh_token_hash=f"r-{token}",
        refresh_expires_at=at + timedelta(days=90),
    )


class FakeClock:
    """A clock the tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)


class Outbox:
    """Reads what the console SMS provider wrote, as a developer would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def messages(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines()]

    def last_code(self, phone: str) -> str:
        for message in reversed(self.messages()):
            if message["to"] == phone and message["template"] == "verification_code":
                match = re.search(r"\b(\d{6})\b", message["body"])
                assert match, message
                return match.group(1)
        raise AssertionError(f"no code was sent to {phone}")


async def register(
    client: httpx.AsyncClient,
    outbox: Outbox,
    phone: str,
    device: str = "phone",
    platform: str = "android",
    pin: str | None = None,
) -> dict[str, Any]:
    """Request a code, read it from the outbox and verify it: a new device session."""
    response = await client.post("/v1/auth/code", json={"phone": phone})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = {
        "phone": phone,
        "code": outbox.last_code(phone),
        "device": {"name": device, "platform": platform},
    }
    if pin is not None:
        body["pin"] = pin
    response = await client.post("/v1/auth/verify", json=body)
    assert response.status_code == 200, response.text
    return snake_keys(response.json())


def snake_keys(body: dict[str, Any]) -> dict[str, Any]:
    """A session as the tests address it (``session["access_token"]``); the API says
    ``accessToken``. Keeps the many tests that only need a session independent of the
    HTTP API's spelling, which tests/api checks on its own."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value for key, value in body.items()}


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5, interval: float = 0.01
) -> None:
    """Wait until ``condition()`` holds: a bounded poll for something that must happen.

    ``condition`` may be a coroutine function (a row in the database, a line in
    ``/metrics``): what is polled has no event to wait on.
    """
    async with asyncio.timeout(timeout):
        while True:
            held = condition()
            if inspect.isawaitable(held):
                held = await held
            if held:
                return
            await asyncio.sleep(interval)


async def _nothing() -> None:
    return None


async def tasks_made_before_have_started() -> None:
    """A barrier: every task made before this call has run to its first wait.

    Tasks take their first step in the order they were made (and a woken task
    its next step in the order it was woken), so a task made now has run only
    once they all have: no time is waited for.
    """
    await asyncio.ensure_future(_nothing())


async def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port`` (for ``eventually``)."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


# -- live sockets ----------------------------------------------------------------------
#
# Proving that nothing arrived takes a barrier, not a pause: something the server
# must send after anything the action could have caused. Two kinds are ordered
# by construction (src/pigeon/gateway/connection.py):
#
# - Ephemeral events (typing, presence) are written to a socket in the order
#   they were produced, together with that socket's answers. An action's
#   typing or presence is produced before the action is answered; a ping the
#   observer sends after that is answered after it: ``WsClient.ping_barrier``.
# - Queued events (messages, receipts) get their place in each device's queue
#   when they commit, and every socket sends its device's queue in that order
#   (reading the database when a publish comes late). A message committed
#   after the action's answer arrived, in a chat the observer is in, reaches
#   the observer after anything the action queued for it: ``before_message``.
#   A ping is no barrier here: an answer may overtake queued events. An ack is
#   answered before it commits; after one, the marker must come from the acking
#   device, whose operations commit in the order it sent them.


async def online(
    connect: Callable[..., Awaitable[WsClient]], session: dict[str, Any], **kwargs: Any
) -> WsClient:
    """A connected device whose backlog has been sent (``drained`` seen).

    ``connect`` is the gateway's fixture (or the media suite's ``open_socket``);
    ``kwargs`` go to it (``auto_ack=False`` for a device that never acks).
    """
    ws = await connect(session, **kwargs)
    await ws.next_event("drained")
    return ws


async def burst(client: WsClient, chat_id: str, name: str, count: int) -> list[dict[str, Any]]:
    """``count`` sends on the wire at once, in order; their answers, in the order sent."""
    return list(
        await asyncio.gather(
            *(
                client.call(
                    "sendMessage",
                    {"chatId": chat_id, "clientMessageId": f"{name}-{i}", "message": f"{name} {i}"},
                )
                for i in range(count)
            )
        )
    )


def is_message(frame: dict[str, Any], message_id: str) -> bool:
    return frame.get("event") == "message" and frame["data"]["messageId"] == message_id


async def mark(sender: WsClient, chat_id: str, text: str = "marker") -> dict[str, Any]:
    """Send a message that ends a wait (see ``before_message``); its answer's data."""
    data = {"chatId": chat_id, "clientMessageId": new_id(), "message": text}
    answer: dict[str, Any] = await sender.call("sendMessage", data)
    return answer


async def before_message(
    ws: WsClient, message_id: str, timeout: float = 10
) -> list[dict[str, Any]]:
    """The events ``ws`` received before the message ``message_id`` (which is read too)."""
    return await ws.until(lambda frame: is_message(frame, message_id), timeout)


async def settle(
    observer: WsClient, sender: WsClient, chat_id: str, timeout: float = 10
) -> list[dict[str, Any]]:
    """Every event ``observer`` receives before a marker ``sender`` sends to ``chat_id`` now.

    Both barriers: a ping for ephemeral events, then the marker for queued ones.
    ``observer`` must be in the chat, on another device than ``sender``.
    """
    frames = await observer.ping_barrier(timeout)
    sent = await mark(sender, chat_id)
    return frames + await before_message(observer, sent["messageId"], timeout)


async def settle_in_new_group(
    observer: WsClient, observer_user_id: str, creator: WsClient
) -> list[dict[str, Any]]:
    """Every event ``observer`` receives before the first message of a group made now.

    Both barriers, for an observer in no chat a marker could be sent to (an
    outsider): a ping for ephemeral events, then a new group that ``creator``
    (another user's device) makes with the observer's user, for queued ones.
    """
    frames = await observer.ping_barrier()
    [rest] = await barrier_group(creator, [observer_user_id], [observer])
    return frames + rest


async def barrier_group(
    creator: WsClient, participants: Sequence[str], sockets: Sequence[WsClient]
) -> list[list[dict[str, Any]]]:
    """Per socket, the events before the "created" message of a new group.

    ``creator`` makes a group with ``participants`` (user ids); each of
    ``sockets`` (devices of its members, the creator's included) gets the
    group's first message after everything queued for it before.
    """
    created = await creator.call(
        "createChat", {"participants": list(participants), "name": "barrier"}
    )

    def first_of_group(frame: dict[str, Any]) -> bool:
        return frame.get("event") == "message" and frame["data"]["chatId"] == created["chatId"]

    return [await ws.until(first_of_group) for ws in sockets]


def of_kind(frames: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    """The events among ``frames`` named one of ``names``."""
    return [frame for frame in frames if frame.get("event") in names]
