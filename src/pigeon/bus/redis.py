"""``Bus`` and ``Presence`` over Redis: a directory of who is where, and a channel per node.

Routing (docs/scaling.md has the costs):

- The directory: hash ``pigeon:dev`` maps each connected device to its node,
  ``pigeon:usr:<user>`` maps a user's connected devices to their nodes, and
  the sorted set ``pigeon:nodes`` holds each node's last heartbeat. A node
  that stops beating (killed, partitioned) is dead after ``node_timeout``
  seconds: whatever the directory says about its devices is ignored from
  then, and every connection here reads its queue once more, since the dead
  node may have committed events it never published. (A node this one has
  not heard of yet is taken to be new, and alive: a node beats before it
  registers any device.)
- Each node subscribes to its own channel, ``pigeon:node:<node>``, and nothing
  else: an event costs one directory lookup and one publish per destination
  node per batch, never a message to every node.

``publish``, ``notify`` and ``disconnect`` never wait: what concerns this
node's connections is handed over at once, the rest is queued for a sender
task that looks up the nodes and publishes in two pipelined round trips.
Entries that reach no live connection go to the ``DeliveryFeedback`` (on the
publishing node when the directory has no live node for the device or the
publish reached no subscriber; on the receiving node when the device left
meanwhile).

When Redis is unreachable, nodes keep committing: every connection here
reads its queue every ``fallback_poll`` seconds instead, and once Redis is
back the node registers its connections again and each reads its queue once
more, so nothing published meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from pigeon.bus import BEATS_PER_TIMEOUT, NODE_TIMEOUT, codec
from pigeon.bus.connections import LocalConnections
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import LiveEvent
from pigeon.services.ports import DeliveryFeedback, Subscriber

log = structlog.get_logger(__name__)

DEVICES = "pigeon:dev"
NODES = "pigeon:nodes"

# Claim a device for a node; the node it had before (to evict its older connection).
_CLAIM = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return old
"""
# Release it, unless another node claimed it since.
_RELEASE = """
for i = 1, 2 do
  if redis.call('HGET', KEYS[i], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[i], ARGV[1]) end
end
"""

# Beat, forget nodes dead for a day, and list the dead ones, on Redis's clock
# (the nodes' clocks may disagree).
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
"""

# A note's first byte says what it is.
ENTRIES, LIVE, CLOSE, EVICT = b"E", b"L", b"C", b"X"


def _user_key(user_id: str) -> str:
    return f"pigeon:usr:{user_id}"


def _channel(node: str) -> str:
    return f"pigeon:node:{node}"


class RedisBus:
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
        self._here = LocalConnections()
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._beat_script = self._redis.register_script(_BEAT)
        self._outgoing: list[tuple[str, Any]] = []
        self._wake = asyncio.Event()
        self._dead: set[str] = set()
        self._healthy = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect, or raise RedisError: a bus that cannot be reached at startup is an error."""
        await self._redis.ping()
        await self._beat()
        listening = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._listen(listening), name="redis-bus-listen"),
            asyncio.create_task(self._send(), name="redis-bus-send"),
            asyncio.create_task(self._heartbeat(), name="redis-bus-heartbeat"),
        ]
        await listening
        self._healthy = True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(RedisError, OSError):
            async with self._redis.pipeline(transaction=False) as pipe:
                for subscriber in self._here.subscribers():
                    keys = [DEVICES, _user_key(subscriber.user_id)]
                    pipe.eval(_RELEASE, 2, *keys, subscriber.device_id, self.node_id)
                pipe.zrem(NODES, self.node_id)
                await pipe.execute()
        await self._redis.aclose()

    @property
    def healthy(self) -> bool:
        return self._healthy

    # -- Bus -------------------------------------------------------------------

    def publish(self, entries: Sequence[InboxEntry]) -> None:
        elsewhere = self._here.deliver(entries)
        if elsewhere:
            self._queue("entries", elsewhere)

    def notify(self, user_ids: Sequence[str], event: LiveEvent) -> None:
        self._here.notify(user_ids, event)
        self._queue("live", (list(user_ids), event))

    def disconnect(self, device_id: str, code: int, reason: str) -> None:
        if not self._here.close(device_id, code, reason):
            self._queue("close", (device_id, code, reason))

    async def attach(self, subscriber: Subscriber) -> None:
        self._here.add(subscriber)
        try:
            previous = await self._claim(
                keys=[DEVICES, _user_key(subscriber.user_id)],
                args=[subscriber.device_id, self.node_id],
            )
            if previous is not None and previous.decode() != self.node_id:
                note = EVICT + subscriber.device_id.encode()
                await self._redis.publish(_channel(previous.decode()), note)
        except (RedisError, OSError) as exc:
            # The connection works here; other nodes learn of it once Redis is back.
            self._unhealthy(exc)

    async def detach(self, subscriber: Subscriber) -> None:
        if not self._here.remove(subscriber):
            return
        with contextlib.suppress(RedisError, OSError):
            await self._release(
                keys=[DEVICES, _user_key(subscriber.user_id)],
                args=[subscriber.device_id, self.node_id],
            )

    def local_devices(self) -> list[str]:
        return self._here.devices()

    @property
    def connections(self) -> int:
        return len(self._here)

    # -- Presence --------------------------------------------------------------

    async def online_users(self, user_ids: Sequence[str]) -> set[str]:
        """Online here or on a live node; while Redis is away, only what this node knows."""
        online = {u for u in user_ids if self._here.has_user(u)}
        rest = [u for u in dict.fromkeys(user_ids) if u not in online]
        if not rest:
            return online
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in rest:
                    pipe.hvals(_user_key(user_id))
                found = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._unhealthy(exc)
            return online
        dead = self._dead
        return online | {u for u, nodes in zip(rest, found, strict=True) if _any_live(nodes, dead)}

    # -- sending -----------------------------------------------------------------

    def _queue(self, kind: str, item: Any) -> None:
        self._outgoing.append((kind, item))
        self._wake.set()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            work, self._outgoing = self._outgoing, []
            try:
                await self._flush(work)
            except (RedisError, OSError) as exc:
                # The entries are in the database: their devices read them when they
                # resync, and the push service hears of nothing here (it cannot tell).
                self._unhealthy(exc)

    async def _flush(self, work: list[tuple[str, Any]]) -> None:
        entries = [e for kind, item in work if kind == "entries" for e in item]
        lives = [item for kind, item in work if kind == "live"]
        closes = [item for kind, item in work if kind == "close"]
        devices = list(dict.fromkeys([e.device_id for e in entries] + [c[0] for c in closes]))
        users = list(dict.fromkeys(u for user_ids, _ in lives for u in user_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(DEVICES, devices or ["-"])
            for user_id in users:
                pipe.hvals(_user_key(user_id))
            found = await pipe.execute()
        node_of = self._live_nodes(dict(zip(devices, found[0], strict=False)))
        user_nodes = {
            u: {n.decode() for n in nodes} - self._dead
            for u, nodes in zip(users, found[1:], strict=True)
        }
        notes: dict[str, list[bytes]] = {}
        by_node: dict[str, list[InboxEntry]] = {}
        unreached: list[InboxEntry] = []
        for entry in entries:
            node = node_of.get(entry.device_id)
            if node is None or node == self.node_id:
                unreached.append(entry)  # nowhere, or here but not any more
            else:
                by_node.setdefault(node, []).append(entry)
        for node, node_entries in by_node.items():
            notes.setdefault(node, []).append(ENTRIES + codec.encode_entries(node_entries))
        for user_ids, event in lives:
            targets: dict[str, list[str]] = {}
            for user_id in user_ids:
                for node in user_nodes.get(user_id, ()):
                    if node != self.node_id:
                        targets.setdefault(node, []).append(user_id)
            for node, node_users in targets.items():
                note = LIVE + orjson.dumps([node_users, codec.encode_live(event)])
                notes.setdefault(node, []).append(note)
        for device_id, code, reason in closes:
            node = node_of.get(device_id)
            if node is not None and node != self.node_id:
                notes.setdefault(node, []).append(CLOSE + orjson.dumps([device_id, code, reason]))
        unreached += await self._publish(notes, by_node)
        if unreached:
            self._feedback.unreached(unreached)

    async def _publish(
        self, notes: dict[str, list[bytes]], by_node: dict[str, list[InboxEntry]]
    ) -> list[InboxEntry]:
        """Publish each node's notes; the entries of nodes that no longer listen."""
        if not notes:
            return []
        order = [(node, note) for node, node_notes in notes.items() for note in node_notes]
        async with self._redis.pipeline(transaction=False) as pipe:
            for node, note in order:
                pipe.publish(_channel(node), note)
            receivers = await pipe.execute()
        gone = {node for (node, _), count in zip(order, receivers, strict=True) if count == 0}
        return [e for node in gone for e in by_node.get(node, [])]

    def _live_nodes(self, found: dict[str, Any]) -> dict[str, str]:
        """device -> node, for devices whose node is alive (Redis answers bytes or None)."""
        dead = self._dead
        result = {}
        for device_id, raw in found.items():
            if raw is not None:
                node = raw.decode()
                if node not in dead:
                    result[device_id] = node
        return result

    # -- receiving -------------------------------------------------------------

    async def _listen(self, listening: asyncio.Future[None]) -> None:
        """This node's channel, resubscribed after every failure."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(_channel(self.node_id))
                if not listening.done():
                    listening.set_result(None)
                else:
                    await self._recovered()
                async for message in pubsub.listen():
                    self._receive(message["data"])
            except (RedisError, OSError) as exc:
                self._unhealthy(exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _receive(self, data: bytes) -> None:
        kind, body = data[:1], data[1:]
        if kind == ENTRIES:
            lost = self._here.deliver(codec.decode_entries(body))
            if lost:  # the device left this node meanwhile
                self._feedback.unreached(lost)
        elif kind == LIVE:
            user_ids, event = orjson.loads(body)
            self._here.notify(user_ids, codec.decode_live(event))
        elif kind == CLOSE:
            device_id, code, reason = orjson.loads(body)
            self._here.close(device_id, code, reason)
        elif kind == EVICT:
            self._here.evict(body.decode())

    # -- health ----------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            beat = self._node_timeout / BEATS_PER_TIMEOUT
            await asyncio.sleep(beat if self._healthy else self._fallback_poll)
            try:
                await self._beat()
            except (RedisError, OSError) as exc:
                self._unhealthy(exc)
            if not self._healthy:
                self._here.resync()  # read the queues, since publishes may be lost

    async def _beat(self) -> None:
        found = await self._beat_script(keys=[NODES], args=[self.node_id, self._node_timeout])
        dead = {node.decode() for node in found}
        newly_dead = dead - self._dead
        self._dead = dead
        if newly_dead and self._tasks:  # not at start: no connection is here yet
            self._here.nodes_died(self.node_id, newly_dead)

    async def _recovered(self) -> None:
        """Redis is back: register this node's connections again, then read every queue."""
        try:
            await self._beat()
            async with self._redis.pipeline(transaction=False) as pipe:
                for subscriber in self._here.subscribers():
                    keys = [DEVICES, _user_key(subscriber.user_id)]
                    pipe.eval(_CLAIM, 2, *keys, subscriber.device_id, self.node_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._unhealthy(exc)
            return
        self._healthy = True
        log.info("bus.recovered", node=self.node_id, connections=len(self._here))
        self._here.resync()

    def _unhealthy(self, exc: BaseException) -> None:
        if self._healthy:
            log.warning("bus.unavailable", node=self.node_id, error=str(exc))
        self._healthy = False


def _any_live(nodes: list[bytes], dead: set[str]) -> bool:
    return any(node.decode() not in dead for node in nodes)
