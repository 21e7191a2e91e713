"""``Bus`` and ``Presence`` over NATS core subjects: a subject per user, NATS routes by interest.

A node subscribes to ``pigeon.usr.<user>`` for each user with a connection on
it, and to two subjects of its own (replies, and revocations: rare, they go
to every node). NATS's own interest graph is the routing table: an
event for a user's device is published once to the user's subject and reaches
only the nodes holding one of the user's connections (each delivers to its
own, and ignores devices it does not hold); when a node dies its
subscriptions die with its connection to NATS. No directory to keep, no
lookup before a publish, and no JetStream: nothing here needs to be stored,
since every queued event is in the database before it is published.

Whether anyone listened comes back for free: each publish names a reply
subject, and NATS answers it with a "no responders" status when no node holds
the user, so those entries go to the ``DeliveryFeedback``. A node that gets
entries for a device it does not hold (the user is online elsewhere on it)
reports them itself.

Every node beats on ``pigeon.nodes`` (``node_timeout`` / 5 apart) and hears
the others' beats. A node silent for ``node_timeout`` seconds (killed,
partitioned) is dead: every connection here reads its queue once more, since
the dead node may have committed events it never published. A node that
closes cleanly says so, and is forgotten without that.

When NATS is unreachable the client buffers and reconnects by itself;
meanwhile every connection here reads its queue every ``fallback_poll``
seconds, and once more after the reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence

import orjson
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from pigeon.bus import BEATS_PER_TIMEOUT, NODE_TIMEOUT, codec
from pigeon.bus.connections import LocalConnections
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import LiveEvent
from pigeon.services.ports import DeliveryFeedback, Subscriber

log = structlog.get_logger(__name__)

# A note's first byte says what it is.
ENTRIES, LIVE, CLOSE, EVICT, PRESENCE = b"E", b"L", b"C", b"X", b"P"
# How long a publish waits for a "no responders" status before it counts as heard.
NO_RESPONDERS_WINDOW = 2.0
PRESENCE_TIMEOUT = 0.5
# Revocations name a device, not its user: the one subject every node listens to.
CLOSE_SUBJECT = "pigeon.close"
# Heartbeats: a node's id, or LEAVING and its id when it closes cleanly.
NODES_SUBJECT = "pigeon.nodes"
LEAVING = b"-"


def _subject(user_id: str) -> str:
    return f"pigeon.usr.{user_id}"


class NatsBus:
    local = False

    def __init__(
        self,
        url: str,
        feedback: DeliveryFeedback,
        node_id: str,
        fallback_poll: float = 2.0,
        node_timeout: float = NODE_TIMEOUT,
    ) -> None:
        self.node_id = node_id
        self._url = url
        self._feedback = feedback
        self._fallback_poll = fallback_poll
        self._node_timeout = node_timeout
        self._beats: dict[str, float] = {}  # other node -> when its last beat arrived
        self._here = LocalConnections()
        self._nc = Client()
        self._subscriptions: dict[str, Subscription] = {}  # user -> its subject's
        self._tokens = itertools.count()
        # reply token -> (when published, the entries): answered only when nobody listened
        self._awaiting: dict[str, tuple[float, list[InboxEntry]]] = {}
        self._outgoing: list[tuple[str, bytes, list[InboxEntry] | None]] = []
        self._wake = asyncio.Event()
        self._healthy = False
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect, or raise: a bus that cannot be reached at startup is an error."""
        await self._nc.connect(
            servers=[self._url],
            name=self.node_id,
            connect_timeout=2,
            reconnect_time_wait=1,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            error_cb=self._error,
        )
        await self._nc.subscribe(f"pigeon.nr.{self.node_id}.*", cb=self._no_responders)
        await self._nc.subscribe(CLOSE_SUBJECT, cb=self._receive)
        await self._nc.subscribe(NODES_SUBJECT, cb=self._heard)
        await self._nc.publish(NODES_SUBJECT, self.node_id.encode())  # the others answer
        await self._nc.flush(timeout=2)
        self._healthy = True
        self._tasks = [
            asyncio.create_task(self._send(), name="nats-bus-send"),
            asyncio.create_task(self._watch(), name="nats-bus-watch"),
            asyncio.create_task(self._heartbeat(), name="nats-bus-heartbeat"),
        ]

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._nc.publish(NODES_SUBJECT, LEAVING + self.node_id.encode())
            await self._nc.close()

    @property
    def healthy(self) -> bool:
        return self._healthy

    # -- Bus -------------------------------------------------------------------

    def publish(self, entries: Sequence[InboxEntry]) -> None:
        elsewhere = self._here.deliver(entries)
        by_user: dict[str, list[InboxEntry]] = {}
        for entry in elsewhere:
            by_user.setdefault(entry.user_id, []).append(entry)
        for user_id, user_entries in by_user.items():
            self._queue(user_id, ENTRIES + codec.encode_entries(user_entries), user_entries)

    def notify(self, user_ids: Sequence[str], event: LiveEvent) -> None:
        self._here.notify(user_ids, event)
        note = LIVE + orjson.dumps([self.node_id, codec.encode_live(event)])
        for user_id in user_ids:
            self._queue(user_id, note, None)

    def disconnect(self, device_id: str, code: int, reason: str) -> None:
        if not self._here.close(device_id, code, reason):
            # Revocations are rare and name no user: they go to every node.
            note = CLOSE + orjson.dumps([device_id, code, reason])
            self._outgoing.append((CLOSE_SUBJECT, note, None))
            self._wake.set()

    async def attach(self, subscriber: Subscriber) -> None:
        self._here.add(subscriber)
        user_id = subscriber.user_id
        try:
            if user_id not in self._subscriptions:
                self._subscriptions[user_id] = await self._nc.subscribe(
                    _subject(user_id), cb=self._receive
                )
            evict = EVICT + orjson.dumps([subscriber.device_id, self.node_id])
            await self._nc.publish(_subject(user_id), evict)
            await self._nc.flush(timeout=2)  # the subscription is live before the queue is read
        except (TimeoutError, NatsError, OSError) as exc:
            self._unhealthy(exc)

    async def detach(self, subscriber: Subscriber) -> None:
        if not self._here.remove(subscriber) or self._here.has_user(subscriber.user_id):
            return
        subscription = self._subscriptions.pop(subscriber.user_id, None)
        if subscription is not None:
            with contextlib.suppress(NatsError, OSError):
                await subscription.unsubscribe()

    def local_devices(self) -> list[str]:
        return self._here.devices()

    @property
    def connections(self) -> int:
        return len(self._here)

    # -- Presence --------------------------------------------------------------

    async def online_users(self, user_ids: Sequence[str]) -> set[str]:
        """Online here, or some node answers for the user; while NATS is away, only here."""
        online = {u for u in user_ids if self._here.has_user(u)}
        rest = [u for u in dict.fromkeys(user_ids) if u not in online]
        answers = await asyncio.gather(*(self._answered(u) for u in rest))
        return online | {u for u, yes in zip(rest, answers, strict=True) if yes}

    async def _answered(self, user_id: str) -> bool:
        try:
            await self._nc.request(_subject(user_id), PRESENCE, timeout=PRESENCE_TIMEOUT)
        except (NoRespondersError, NatsTimeout):
            return False
        except (NatsError, OSError) as exc:
            self._unhealthy(exc)
            return False
        return True

    # -- sending -----------------------------------------------------------------

    def _queue(self, user_id: str, note: bytes, entries: list[InboxEntry] | None) -> None:
        self._outgoing.append((_subject(user_id), note, entries))
        self._wake.set()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            work, self._outgoing = self._outgoing, []
            now = time.monotonic()
            try:
                for subject, note, entries in work:
                    if entries is None:
                        await self._nc.publish(subject, note)
                    else:  # NATS answers the reply subject only if nobody listens
                        token = str(next(self._tokens))
                        self._awaiting[token] = (now, entries)
                        await self._nc.publish(
                            subject, note, reply=f"pigeon.nr.{self.node_id}.{token}"
                        )
            except (NatsError, OSError) as exc:
                self._unhealthy(exc)

    async def _no_responders(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        waited = self._awaiting.pop(token, None)
        if waited is not None and msg.headers and msg.headers.get("Status") == "503":
            self._feedback.unreached(waited[1])

    # -- receiving -------------------------------------------------------------

    async def _receive(self, msg: Msg) -> None:
        data = msg.data
        kind, body = data[:1], data[1:]
        if kind == ENTRIES:
            lost = self._here.deliver(codec.decode_entries(body))
            if lost:  # the user is here, this device is not
                self._feedback.unreached(lost)
        elif kind == LIVE:
            sender, event = orjson.loads(body)
            if sender != self.node_id:
                user_id = msg.subject.rsplit(".", 1)[-1]
                self._here.notify([user_id], codec.decode_live(event))
        elif kind == CLOSE:
            device_id, code, reason = orjson.loads(body)
            self._here.close(device_id, code, reason)
        elif kind == EVICT:
            device_id, node = orjson.loads(body)
            if node != self.node_id:
                self._here.evict(device_id)
        elif kind == PRESENCE and msg.reply:
            await self._nc.publish(msg.reply, b"1")

    # -- health ----------------------------------------------------------------

    async def _watch(self) -> None:
        """Forget old reply tokens; while NATS is away, have every connection read its queue."""
        while True:
            await asyncio.sleep(self._fallback_poll)
            horizon = time.monotonic() - NO_RESPONDERS_WINDOW
            for token in [t for t, (at, _) in self._awaiting.items() if at < horizon]:
                del self._awaiting[token]
            if not self._healthy:
                self._here.resync()

    async def _heartbeat(self) -> None:
        """Beat, and declare dead the nodes that stopped beating (their commits are read back)."""
        while True:
            await asyncio.sleep(self._node_timeout / BEATS_PER_TIMEOUT)
            with contextlib.suppress(NatsError, OSError):
                await self._nc.publish(NODES_SUBJECT, self.node_id.encode())
            if not self._healthy:
                continue  # nothing was heard meanwhile: no one's silence means anything
            horizon = time.monotonic() - self._node_timeout
            dead = [node for node, at in self._beats.items() if at < horizon]
            if dead:
                for node in dead:
                    del self._beats[node]
                self._here.nodes_died(self.node_id, dead)

    async def _heard(self, msg: Msg) -> None:
        if msg.data.startswith(LEAVING):
            self._beats.pop(msg.data[1:].decode(), None)
            return
        node = msg.data.decode()
        if node == self.node_id:
            return
        if node not in self._beats:  # a newcomer: it hears of this node at once
            with contextlib.suppress(NatsError, OSError):
                await self._nc.publish(NODES_SUBJECT, self.node_id.encode())
        self._beats[node] = time.monotonic()

    async def _disconnected(self) -> None:
        if not self._closing:
            self._unhealthy(ConnectionError("disconnected from NATS"))

    async def _reconnected(self) -> None:
        # The client subscribed again by itself; what was published meanwhile may be lost.
        # Beats were not heard meanwhile either: each node gets a whole timeout again.
        now = time.monotonic()
        self._beats = dict.fromkeys(self._beats, now)
        self._healthy = True
        log.info("bus.recovered", node=self.node_id, connections=len(self._here))
        self._here.resync()

    async def _error(self, exc: Exception) -> None:
        log.warning("bus.error", node=self.node_id, error=str(exc))

    def _unhealthy(self, exc: BaseException) -> None:
        if self._healthy:
            log.warning("bus.unavailable", node=self.node_id, error=str(exc))
        self._healthy = False
        self._here.resync()
