"""The in-process bus and presence directory: one node, its connections in this process."""

from __future__ import annotations

from collections.abc import Sequence

from pigeon.bus.connections import LocalConnections
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import LiveEvent
from pigeon.services.ports import DeliveryFeedback, Subscriber


class LocalBus:
    """``Bus`` and ``Presence`` for a single process: every connection is local."""

    local = True
    healthy = True

    def __init__(self, feedback: DeliveryFeedback, node_id: str) -> None:
        self._feedback = feedback
        self.node_id = node_id
        self._here = LocalConnections()

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect from."""

    # -- Bus -------------------------------------------------------------------

    def publish(self, entries: Sequence[InboxEntry]) -> None:
        unreached = self._here.deliver(entries)
        if unreached:
            self._feedback.unreached(unreached)

    def notify(self, user_ids: Sequence[str], event: LiveEvent) -> None:
        self._here.notify(user_ids, event)

    def disconnect(self, device_id: str, code: int, reason: str) -> None:
        self._here.close(device_id, code, reason)

    async def attach(self, subscriber: Subscriber) -> None:
        self._here.add(subscriber)

    async def detach(self, subscriber: Subscriber) -> None:
        self._here.remove(subscriber)

    def local_devices(self) -> list[str]:
        return self._here.devices()

    @property
    def connections(self) -> int:
        return len(self._here)

    # -- Presence --------------------------------------------------------------

    async def online_users(self, user_ids: Sequence[str]) -> set[str]:
        return {user_id for user_id in user_ids if self._here.has_user(user_id)}
