"""One device's live WebSocket: commands in, answers and events out.

Two loops share the socket. The reader validates each frame and runs its
command (``gateway/commands.py``); answers are queued when the command's
awaitable is done. The pump is the only writer: it sends answers and live
events first, then the device's queued events in inbox order, as flow control
allows (``gateway/outbound.py``). It runs only while there is something to
send, and hot commands are answered from callbacks, so an idle connection
holds no task but its reader and a message costs no task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from pigeon.domain.delivery import InboxEntry
from pigeon.domain.errors import PigeonError
from pigeon.domain.events import LiveEvent
from pigeon.gateway import events
from pigeon.gateway.commands import COMMANDS
from pigeon.gateway.frames import FrameError, parse_command
from pigeon.gateway.outbound import QueuedEvents
from pigeon.gateway.services import GatewayServices
from pigeon.gateway.transport import SEND_TEXT_NOW
from pigeon.services.accounts import Principal
from pigeon.services.ports import StorageError

log = structlog.get_logger(__name__)

CLOSE_POLICY = 1008
CLOSE_UNSUPPORTED = 1003
CLOSE_SERVER_ERROR = 1011
PUMP_RETRY_SECONDS = 1.0
MAX_OUTBOX_LIVE_EVENTS = 64


@dataclass(slots=True, frozen=True)
class ConnectionLimits:
    max_in_flight: int = 256
    max_pending_commands: int = 128


class Lifecycle(Enum):
    OPEN = "open"
    CLOSING = "closing"  # a close was asked for; the socket closes soon
    FINISHED = "finished"  # the reader has returned: no new pump, no new answers


class DeviceConnection:
    """A live connection of one device; also its ``Subscriber`` on the bus."""

    # Slots: thousands of these live at once, and most of them sit idle.
    __slots__ = (
        "_admitted",
        "_lifecycle",
        "_limits",
        "_outbox",
        "_pump_task",
        "_pump_wanted",
        "_room",
        "_send_now",
        "_tasks",
        "_unanswered",
        "_ws",
        "device_id",
        "principal",
        "queued",
        "services",
        "user_id",
    )

    def __init__(
        self,
        websocket: WebSocket,
        principal: Principal,
        services: GatewayServices,
        limits: ConnectionLimits,
        admitted: Callable[[], None] | None = None,
    ) -> None:
        self.device_id = principal.device_id
        self.user_id = principal.user_id
        self.principal = principal
        self.services = services
        self.queued = QueuedEvents(limits.max_in_flight)
        self._ws = websocket
        # The socket's direct writer, when the server offers one (``pigeon serve`` does).
        self._send_now: Callable[[str], bool] | None = websocket.scope.get("extensions", {}).get(
            SEND_TEXT_NOW
        )
        self._limits = limits
        # Answers and live events, encoded, waiting for the pump.
        self._outbox: list[str] = []
        self._pump_task: asyncio.Task[None] | None = None
        self._pump_wanted = False
        self._unanswered = 0
        self._room: asyncio.Future[None] | None = None  # set while the reader waits
        self._tasks: set[asyncio.Task[Any]] | None = None  # rare: made when first needed
        self._lifecycle = Lifecycle.OPEN
        # Called once the first page of the queue was read: the handshake is over
        # and the next newcomer may start its own (``gateway/admission.py``).
        self._admitted = admitted

    # -- Subscriber (called by the bus; must not block) -------------------------

    def deliver(self, entries: Sequence[InboxEntry]) -> None:
        self.queued.published(entries)
        self.request_pump()

    def notify(self, event: LiveEvent) -> None:
        if len(self._outbox) < MAX_OUTBOX_LIVE_EVENTS:  # a lagging reader misses typing only
            self._outbox.append(events.encode(events.live_frame(event)))
            self.request_pump()

    def resync(self) -> None:
        self.queued.resync()
        self.request_pump()

    def close(self, code: int, reason: str) -> None:
        if self._lifecycle is Lifecycle.OPEN:
            self._lifecycle = Lifecycle.CLOSING
            self._spawn(self._close_socket(code, reason))

    # -- running ---------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the client leaves or it is closed."""
        bus, presence = self.services.bus, self.services.presence
        await self.services.messaging.settle_acks(self.device_id)
        await bus.attach(self)
        try:
            # Before the pump's first read, not beside it: a newcomer holds one
            # database connection at a time, so the handshakes the admission gate
            # lets through (2 connections each, side by side) cannot take the
            # whole pool from connected devices' commands.
            try:
                await presence.announce(self.principal, online=True)
            except StorageError:
                log.warning("gateway.presence_unavailable", device_id=self.device_id)
            self.request_pump()
            await self._read()
        finally:
            await bus.detach(self)  # first, so no new pump starts after this
            self.services.messaging.commit_acks_now()
            self._lifecycle = Lifecycle.FINISHED
            pump = self._pump_task
            if pump is not None:
                pump.cancel()
            for task in list(self._tasks or ()):
                task.cancel()
            if pump is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            self._handshake_done()
            with contextlib.suppress(Exception):
                await presence.connection_closed(self.principal)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self._close_socket(CLOSE_UNSUPPORTED, "binary frames are not supported")
                return
            try:
                command = parse_command(text)
            except FrameError as exc:
                self._put(events.error(exc.request_id, exc.code, exc.message))
                continue
            if self._backlog() >= self._limits.max_pending_commands:
                # Stop reading: a client that sends without reading the answers
                # must not grow the outbox without bound.
                self._room = asyncio.get_running_loop().create_future()
                await self._room
            self._dispatch(command)

    # -- commands --------------------------------------------------------------

    def _dispatch(self, parsed: Any) -> None:
        """Run the command; it is answered when its awaitable is done."""
        command = COMMANDS.get(parsed.type)
        if command is None:  # "auth" after authentication, for instance
            self._put(events.error(parsed.id, "invalid_state", "Already authenticated."))
            return
        try:
            result = command.run(self, parsed.data)
        except PigeonError as exc:
            self._put(events.error(parsed.id, exc.code, exc.message))
            return
        future = result if asyncio.isfuture(result) else self._spawn(result)
        self._unanswered += 1
        future.add_done_callback(functools.partial(self._answer, parsed.id, command.answer))

    def _answer(
        self, request_id: Any, make_data: Callable[[Any], Any], future: asyncio.Future[Any]
    ) -> None:
        self._unanswered -= 1
        if future.cancelled():
            self._put(events.error(request_id, "unavailable", "The server is stopping."))
        elif (exc := future.exception()) is not None:
            self._put(_error_frame(request_id, exc))
        elif request_id is not None:
            self._put(events.answer(request_id, make_data(future.result())))
        self._resume_reader()

    def _backlog(self) -> int:
        """Commands not answered yet, and answers not sent yet."""
        return self._unanswered + len(self._outbox)

    def _resume_reader(self) -> None:
        room = self._room
        if room is not None and self._backlog() < self._limits.max_pending_commands:
            self._room = None
            if not room.done():
                room.set_result(None)

    # -- the pump: the only writer -------------------------------------------------

    def request_pump(self) -> None:
        self._pump_wanted = True
        if self._pump_task is None and self._lifecycle is not Lifecycle.FINISHED:
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        # No deadline here: a write waits only for the peer to read, and the
        # socket's protocol drops a peer that has not read for the send timeout
        # (gateway/transport.py), which ends this burst.
        try:
            while self._pump_wanted:
                self._pump_wanted = False
                try:
                    while self._outbox:
                        texts, self._outbox = self._outbox, []
                        for text in texts:
                            await self._send_text(text)
                        self._resume_reader()
                    await self._send_queued()
                except StorageError:
                    # The backlog could not be read: it is safe in the database. Try
                    # again shortly; no other event may come to wake the pump.
                    log.warning("gateway.pump_unavailable", device_id=self.device_id)
                    self._pump_wanted = True
                    await asyncio.sleep(PUMP_RETRY_SECONDS)
        finally:
            self._pump_task = None

    async def _send_queued(self) -> None:
        queue = self.queued
        while (room := queue.room()) > 0:
            entries = queue.take_published(room)
            drained = False
            if not entries and queue.reads_database:
                entries = await self.services.messaging.pending(
                    self.device_id, queue.last_sent, room
                )
                drained = queue.read_from_database(len(entries), room)
                self._handshake_done()
            for entry in entries:
                await self._send_text(events.encode(events.queued_frame(entry)))
                queue.sent(entry)
            if drained:
                await self._send_text(events.encode(events.drained_frame(queue.last_sent)))
            if not entries:
                return

    def _handshake_done(self) -> None:
        admitted, self._admitted = self._admitted, None
        if admitted is not None:
            admitted()

    # -- the socket ------------------------------------------------------------

    def _put(self, frame: dict[str, Any]) -> None:
        """Queue an answer for the pump."""
        self._outbox.append(events.encode(frame))
        self.request_pump()

    async def _send_text(self, text: str) -> None:
        if self._ws.application_state is not WebSocketState.CONNECTED:
            return
        send_now = self._send_now
        if send_now is not None and send_now(text):
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.send_text(text)

    async def _close_socket(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            if self._ws.application_state is WebSocketState.CONNECTED:
                await self._ws.close(code, reason)

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coroutine)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _error_frame(request_id: Any, error: BaseException) -> dict[str, Any]:
    if isinstance(error, PigeonError):
        return events.error(request_id, error.code, error.message)
    if isinstance(error, StorageError):
        return events.error(request_id, "unavailable", "Storage is unavailable.")
    log.error("gateway.command_failed", exc_info=error)
    return events.error(request_id, "internal_error", "The command failed.")
