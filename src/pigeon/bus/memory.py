"""The in-process bus: one node, connections in this process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pigeon.services.ports import Subscriber

CLOSE_REPLACED = 4409


class LocalBus:
    def __init__(self) -> None:
        self._by_device: dict[str, Subscriber] = {}
        self._by_user: dict[str, set[Subscriber]] = {}

    async def publish_queued(self, device_id: str, entries: Sequence[dict[str, Any]]) -> None:
        subscriber = self._by_device.get(device_id)
        if subscriber is not None:
            subscriber.deliver(entries)

    async def publish_ephemeral(self, user_ids: Sequence[str], event: dict[str, Any]) -> None:
        for user_id in user_ids:
            for subscriber in tuple(self._by_user.get(user_id, ())):
                subscriber.notify(event)

    async def disconnect_device(self, device_id: str, code: int, reason: str) -> None:
        subscriber = self._by_device.get(device_id)
        if subscriber is not None:
            subscriber.close(code, reason)

    async def subscribe(self, subscriber: Subscriber) -> None:
        previous = self._by_device.get(subscriber.device_id)
        if previous is not None and previous is not subscriber:
            self._forget(previous)
            previous.close(CLOSE_REPLACED, "replaced by a newer connection")
        self._by_device[subscriber.device_id] = subscriber
        self._by_user.setdefault(subscriber.user_id, set()).add(subscriber)

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        if self._by_device.get(subscriber.device_id) is subscriber:
            self._forget(subscriber)

    def online_users(self, user_ids: Sequence[str]) -> set[str]:
        return {user_id for user_id in user_ids if self._by_user.get(user_id)}

    def _forget(self, subscriber: Subscriber) -> None:
        self._by_device.pop(subscriber.device_id, None)
        subscribers = self._by_user.get(subscriber.user_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_user[subscriber.user_id]

    def local_devices(self) -> list[str]:
        return list(self._by_device)

    @property
    def connections(self) -> int:
        return len(self._by_device)
