"""The in-process bus and presence directory: one node, its connections in this process."""

from __future__ import annotations

from collections.abc import Sequence

from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import LiveEvent
from pigeon.services.ports import DeliveryFeedback, Subscriber

CLOSE_REPLACED = 4409


class LocalBus:
    """``Bus`` and ``Presence`` for a single process: every connection is local."""

    def __init__(self, feedback: DeliveryFeedback, node_id: str = "local") -> None:
        self._feedback = feedback
        self.node_id = node_id
        self._by_device: dict[str, Subscriber] = {}
        self._by_user: dict[str, set[Subscriber]] = {}

    # -- Bus -------------------------------------------------------------------

    def publish(self, entries: Sequence[InboxEntry]) -> None:
        by_device: dict[str, list[InboxEntry]] = {}
        for entry in entries:
            by_device.setdefault(entry.device_id, []).append(entry)
        unreached: list[InboxEntry] = []
        for device_id, device_entries in by_device.items():
            subscriber = self._by_device.get(device_id)
            if subscriber is None:
                unreached += device_entries
            else:
                subscriber.deliver(device_entries)
        if unreached:
            self._feedback.unreached(unreached)

    def notify(self, user_ids: Sequence[str], event: LiveEvent) -> None:
        for user_id in user_ids:
            for subscriber in tuple(self._by_user.get(user_id, ())):
                subscriber.notify(event)

    def disconnect(self, device_id: str, code: int, reason: str) -> None:
        subscriber = self._by_device.get(device_id)
        if subscriber is not None:
            subscriber.close(code, reason)

    async def attach(self, subscriber: Subscriber) -> None:
        previous = self._by_device.get(subscriber.device_id)
        if previous is not None and previous is not subscriber:
            self._forget(previous)
            previous.close(CLOSE_REPLACED, "replaced by a newer connection")
        self._by_device[subscriber.device_id] = subscriber
        self._by_user.setdefault(subscriber.user_id, set()).add(subscriber)

    async def detach(self, subscriber: Subscriber) -> None:
        if self._by_device.get(subscriber.device_id) is subscriber:
            self._forget(subscriber)

    def local_devices(self) -> list[str]:
        return list(self._by_device)

    @property
    def connections(self) -> int:
        return len(self._by_device)

    # -- Presence --------------------------------------------------------------

    async def online_users(self, user_ids: Sequence[str]) -> set[str]:
        return {user_id for user_id in user_ids if self._by_user.get(user_id)}

    async def nodes_of(self, device_ids: Sequence[str]) -> dict[str, str]:
        return {d: self.node_id for d in device_ids if d in self._by_device}

    def _forget(self, subscriber: Subscriber) -> None:
        self._by_device.pop(subscriber.device_id, None)
        subscribers = self._by_user.get(subscriber.user_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_user[subscriber.user_id]
