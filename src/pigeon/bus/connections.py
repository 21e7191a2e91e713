"""The live connections of this process, by device and by user: every bus keeps one.

A bus, local or remote, hands what reaches this node to these connections; a
remote bus also asks them what is here (to answer presence, to re-register
after an outage) and tells them to read their queues again when it may have
missed something.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog

from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import LiveEvent
from pigeon.services.ports import Subscriber

log = structlog.get_logger(__name__)

CLOSE_REPLACED = 4409


class LocalConnections:
    def __init__(self) -> None:
        self._by_device: dict[str, Subscriber] = {}
        self._by_user: dict[str, set[Subscriber]] = {}

    def add(self, subscriber: Subscriber) -> None:
        """Route the device's events here; an older connection of it here closes (4409)."""
        previous = self._by_device.get(subscriber.device_id)
        if previous is not None and previous is not subscriber:
            self._forget(previous)
            previous.close(CLOSE_REPLACED, "replaced by a newer connection")
        self._by_device[subscriber.device_id] = subscriber
        self._by_user.setdefault(subscriber.user_id, set()).add(subscriber)

    def remove(self, subscriber: Subscriber) -> bool:
        """Stop routing to ``subscriber``; False when a newer connection replaced it already."""
        if self._by_device.get(subscriber.device_id) is not subscriber:
            return False
        self._forget(subscriber)
        return True

    def deliver(self, entries: Sequence[InboxEntry]) -> list[InboxEntry]:
        """Hand entries to their devices' connections here; the entries of devices not here."""
        by_device: dict[str, list[InboxEntry]] = {}
        for entry in entries:
            by_device.setdefault(entry.device_id, []).append(entry)
        elsewhere: list[InboxEntry] = []
        for device_id, device_entries in by_device.items():
            subscriber = self._by_device.get(device_id)
            if subscriber is None:
                elsewhere += device_entries
            else:
                subscriber.deliver(device_entries)
        return elsewhere

    def notify(self, user_ids: Sequence[str], event: LiveEvent) -> None:
        for user_id in user_ids:
            for subscriber in tuple(self._by_user.get(user_id, ())):
                subscriber.notify(event)

    def close(self, device_id: str, code: int, reason: str) -> bool:
        subscriber = self._by_device.get(device_id)
        if subscriber is None:
            return False
        subscriber.close(code, reason)
        return True

    def evict(self, device_id: str) -> None:
        """A newer connection of the device opened on another node: close this one (4409)."""
        self.close(device_id, CLOSE_REPLACED, "replaced by a newer connection")

    def resync(self) -> None:
        """Every connection reads its queue again (the bus may have dropped something)."""
        for subscriber in tuple(self._by_device.values()):
            subscriber.resync()

    def nodes_died(self, node_id: str, dead: Iterable[str]) -> None:
        """Other nodes stopped beating: what they committed but had not published yet
        is only in the queues, so every connection here reads its own once more."""
        log.warning("bus.node_dead", node=node_id, dead=sorted(dead))
        self.resync()

    def has_user(self, user_id: str) -> bool:
        return bool(self._by_user.get(user_id))

    def devices(self) -> list[str]:
        return list(self._by_device)

    def subscribers(self) -> list[Subscriber]:
        return list(self._by_device.values())

    def __len__(self) -> int:
        return len(self._by_device)

    def _forget(self, subscriber: Subscriber) -> None:
        self._by_device.pop(subscriber.device_id, None)
        subscribers = self._by_user.get(subscriber.user_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_user[subscriber.user_id]
