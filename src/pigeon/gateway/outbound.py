"""Which of a device's queued events to send next, and from where: flow control, no I/O.

The device's queue lives in the database; the bus brings new entries as they
commit. A connection follows one of three states:

``CATCHING_UP``
    Just connected: the backlog is read from the database, page by page. When a
    page comes back short, the backlog is out and ``drained`` is due (once per
    connection); the state becomes ``LIVE``.
``LIVE``
    Entries come from the bus, in inbox order, and go out as they come.
``BEHIND``
    The bus skipped ahead (a gap: another node's publish is late or was lost)
    or brought more than the window holds: what it brought is dropped and the
    database is read again from the last entry sent, until a short page
    brings the connection back to ``LIVE``.

At most ``max_in_flight`` entries are sent and not acked at a time; a device
that stops acking costs bounded memory, its queue waits in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from pigeon.domain.delivery import InboxEntry
from pigeon.domain.errors import InvalidInput


class State(Enum):
    CATCHING_UP = "catching up"
    LIVE = "live"
    BEHIND = "behind"


class QueuedEvents:
    __slots__ = ("_bus_entries", "last_acked", "last_sent", "max_in_flight", "state")

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.state = State.CATCHING_UP
        self.last_sent = 0
        self.last_acked = 0
        # A list, not a deque: an empty deque costs ten times an empty list,
        # and most connections hold nothing most of the time.
        self._bus_entries: list[InboxEntry] = []

    @property
    def reads_database(self) -> bool:
        """Entries must be read back from the queue (not only taken from the bus)."""
        return self.state is not State.LIVE

    @property
    def waiting(self) -> bool:
        """Something may be ready to send once there is room."""
        return bool(self._bus_entries) or self.state is not State.LIVE

    def room(self) -> int:
        return self.max_in_flight - (self.last_sent - self.last_acked)

    def published(self, entries: Sequence[InboxEntry]) -> None:
        """Entries the bus brought, in inbox order."""
        if len(self._bus_entries) + len(entries) > self.max_in_flight:
            self._fall_behind()  # too far behind: the database has them all
        else:
            self._bus_entries.extend(entries)

    def take_published(self, room: int) -> list[InboxEntry]:
        """Up to ``room`` entries from the bus that follow the last one sent."""
        pending = self._bus_entries
        start = 0
        while start < len(pending) and pending[start].seq <= self.last_sent:
            start += 1  # already sent, read back from the database
        if start < len(pending) and pending[start].seq != self.last_sent + 1:
            self._fall_behind()  # a gap
            return []
        taken = pending[start : start + room]
        self._bus_entries = pending[start + room :]
        return taken

    def read_from_database(self, count: int, asked: int) -> bool:
        """A page of ``count`` entries came back for ``asked``; True when ``drained`` is due."""
        if count == asked:
            return False
        caught_up_first_time = self.state is State.CATCHING_UP
        self.state = State.LIVE
        return caught_up_first_time

    def sent(self, entry: InboxEntry) -> None:
        self.last_sent = entry.seq

    def acked(self, up_to: int) -> bool:
        """Record the device's cumulative ack; False when an earlier ack covered it."""
        if up_to > self.last_sent:
            raise InvalidInput("invalid_ack", "Acked past the last event sent.")
        if up_to <= self.last_acked:
            return False
        self.last_acked = up_to
        return True

    def resync(self) -> None:
        """The bus may have dropped entries: read the database again from the last sent."""
        if self.state is State.LIVE:
            self.state = State.BEHIND

    def _fall_behind(self) -> None:
        self._bus_entries = []
        if self.state is State.LIVE:
            self.state = State.BEHIND
