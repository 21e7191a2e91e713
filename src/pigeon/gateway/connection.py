"""One device's live WebSocket: commands in, answers and events out.

Two loops share the socket. The reader validates each frame and hands it to a
service; sends, acks and read marks join the group committer's queue in the
order they arrived, and their answers go out when their batch commits. The
pump is the only writer: it sends answers, ephemeral events, and the device's
queued events in inbox order (straight from the bus when they follow what was
sent last, otherwise read back from the database). It runs only while there
is something to send, and the hot commands are answered from callbacks, so a
message costs no task of its own. At most ``max_in_flight`` events are
unacknowledged at a time, so a device that stops acking costs bounded memory;
its queue stays in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from pigeon.domain.chats import Role
from pigeon.domain.errors import InvalidInput, PigeonError
from pigeon.gateway.frames import FrameError, parse_command
from pigeon.gateway.services import GatewayServices
from pigeon.services.accounts import Principal
from pigeon.services.messaging import Ack, MarkRead, SendMessage, SendResult
from pigeon.services.ports import StorageError

log = structlog.get_logger(__name__)

CLOSE_POLICY = 1008
CLOSE_UNSUPPORTED = 1003
CLOSE_SERVER_ERROR = 1011
PUMP_RETRY_SECONDS = 1.0
MAX_OUTBOX_EPHEMERAL = 64


@dataclass(slots=True, frozen=True)
class ConnectionLimits:
    max_in_flight: int = 256
    max_pending_commands: int = 128
    send_timeout: float = 30.0
    max_message_length: int = 65536


def encode(frame: dict[str, Any]) -> str:
    """The frame as compact JSON text (orjson: the stdlib's encoder was a sixth of the CPU)."""
    try:
        return orjson.dumps(frame).decode()
    except orjson.JSONEncodeError:
        # Text orjson refuses (a lone surrogate from an older row, say) goes out
        # escaped rather than failing the frame.
        return json.dumps(frame, separators=(",", ":"))


class DeviceConnection:
    """A live connection of one device; also its ``Subscriber`` on the bus."""

    # Slots: thousands of these live at once, and most of them sit idle.
    __slots__ = (
        "_closing",
        "_drained",
        "_finished",
        "_last_acked",
        "_last_sent",
        "_limits",
        "_need_fetch",
        "_outbox",
        "_principal",
        "_pump_task",
        "_pump_wanted",
        "_pushed",
        "_room",
        "_services",
        "_tasks",
        "_unanswered",
        "_ws",
        "device_id",
        "user_id",
    )

    def __init__(
        self,
        websocket: WebSocket,
        principal: Principal,
        services: GatewayServices,
        limits: ConnectionLimits,
    ) -> None:
        self.device_id = principal.device_id
        self.user_id = principal.user_id
        self._principal = principal
        self._ws = websocket
        self._services = services
        self._limits = limits
        self._last_sent = 0
        self._last_acked = 0
        # Lists, not deques: an empty deque costs ten times an empty list, and
        # most connections hold nothing most of the time.
        self._pushed: list[dict[str, Any]] = []
        # Answers and ephemeral events, encoded, waiting for the pump.
        self._outbox: list[str] = []
        self._need_fetch = True
        self._drained = False
        # The pump runs only while there is something to send: an idle
        # connection holds no task of its own beyond the one reading it.
        self._pump_task: asyncio.Task[None] | None = None
        self._pump_wanted = False
        self._unanswered = 0
        self._room: asyncio.Future[None] | None = None  # set while the reader waits
        self._tasks: set[asyncio.Task[None]] | None = None  # rare: made when first needed
        self._closing: tuple[int, str] | None = None
        self._finished = False

    # -- Subscriber (called by the bus; must not block) -------------------------

    def deliver(self, entries: Sequence[dict[str, Any]]) -> None:
        if len(self._pushed) + len(entries) > self._limits.max_in_flight:
            self._pushed.clear()  # too far behind: read them back from the database
            self._need_fetch = True
        else:
            self._pushed.extend(entries)
        self._request_pump()

    def notify(self, event: dict[str, Any]) -> None:
        if len(self._outbox) < MAX_OUTBOX_EPHEMERAL:  # a lagging reader misses typing, not answers
            self._outbox.append(encode(event))
            self._request_pump()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason)
            self._spawn(self._close_socket(code, reason))

    # -- running ---------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the client leaves or it is closed."""
        bus = self._services.bus
        await bus.subscribe(self)
        self._request_pump()
        try:
            try:
                await self._services.presence.announce(self._principal, online=True)
            except StorageError:
                log.warning("gateway.presence_unavailable", device_id=self.device_id)
            await self._read()
        finally:
            await bus.unsubscribe(self)  # first, so no new pump starts after this
            self._finished = True  # nor for an answer that commits later
            pump = self._pump_task
            if pump is not None:
                pump.cancel()
            for task in list(self._tasks or ()):
                task.cancel()
            if pump is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            if not bus.online_users([self.user_id]):
                with contextlib.suppress(Exception):
                    await self._services.presence.announce(self._principal, online=False)

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
                self._put(_error(exc.request_id, exc.code, exc.message))
                continue
            if self._backlog() >= self._limits.max_pending_commands:
                # Stop reading: a client that sends without reading the answers
                # must not grow the outbox without bound.
                self._room = asyncio.get_running_loop().create_future()
                await self._room
            self._dispatch(command)

    # -- commands --------------------------------------------------------------

    def _dispatch(self, command: Any) -> None:
        """Run a command's handler; its answer goes out now, from a callback, or from a task."""
        handler = getattr(self, f"_on_{command.type}", None)
        if handler is None:  # "auth" after authentication, for instance
            self._put(_error(command.id, "invalid_state", "Already authenticated."))
            return
        try:
            result = handler(command.data)
        except PigeonError as exc:
            self._put(_error(command.id, exc.code, exc.message))
            return
        if isinstance(result, asyncio.Future):  # the group committer's: answered on commit
            self._unanswered += 1
            result.add_done_callback(functools.partial(self._answer_future, command.id))
        elif isinstance(result, Awaitable):
            self._unanswered += 1
            self._spawn(self._answer(command.id, result))
        elif command.id is not None:
            self._put({"id": command.id, "ok": True, "data": result})

    def _answer_future(self, request_id: Any, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            frame = _error(request_id, "unavailable", "The server is stopping.")
        elif (error := future.exception()) is not None:
            frame = _error_frame(request_id, error)
        elif request_id is None:
            frame = None
        else:
            result = future.result()
            data = result.as_data() if isinstance(result, SendResult) else result
            frame = {"id": request_id, "ok": True, "data": data}
        if frame is not None:
            self._put(frame)
        self._answered()

    async def _answer(self, request_id: Any, result: Awaitable[Any]) -> None:
        try:
            data = await result
        except Exception as exc:
            self._put(_error_frame(request_id, exc))
        else:
            if request_id is not None:
                self._put({"id": request_id, "ok": True, "data": data})
        finally:
            self._answered()

    def _answered(self) -> None:
        self._unanswered -= 1
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

    def _on_ping(self, data: Any) -> dict[str, Any]:
        return {"pong": True}

    def _on_sendMessage(self, data: Any) -> asyncio.Future[Any]:
        if len(data.message) > self._limits.max_message_length:
            raise InvalidInput(
                "message_too_long",
                f"A message has at most {self._limits.max_message_length} characters.",
            )
        if not data.message.strip() and not data.attachments:
            raise InvalidInput("empty_message", "A message needs text or an attachment.")
        return self._services.messaging.committer.submit_nowait(
            SendMessage(
                principal=self._principal,
                chat_id=data.chatId,
                client_message_id=data.clientMessageId,
                body=data.message,
                attachments=list(data.attachments),
                reply_to=data.replyTo,
            )
        )

    def _on_ack(self, data: Any) -> dict[str, int]:
        """Acks free room at once; their deletes join the next batch.

        If that batch fails the entries stay queued and come again after a
        reconnect: at least once, never lost.
        """
        if data.upTo > self._last_sent:
            raise InvalidInput("invalid_ack", "Acked past the last event sent.")
        if data.upTo <= self._last_acked:
            return {"upTo": self._last_acked}
        self._last_acked = data.upTo
        if self._pushed or self._need_fetch:  # events waited for this room
            self._request_pump()
        future = self._services.messaging.committer.submit_nowait(Ack(self._principal, data.upTo))
        future.add_done_callback(_consume_outcome)
        return {"upTo": data.upTo}

    def _on_markRead(self, data: Any) -> asyncio.Future[Any]:
        return self._services.messaging.committer.submit_nowait(
            MarkRead(self._principal, data.chatId, data.upToSeq)
        )

    async def _on_createChat(self, data: Any) -> dict[str, Any]:
        chat_id, created = await self._services.chats.create_chat(
            self._principal, list(data.participants), data.name
        )
        return {"chatId": chat_id, "created": created}

    async def _on_modifyChatParticipants(self, data: Any) -> dict[str, Any]:
        chats = self._services.chats
        if data.operation == "ADD":
            await chats.add_member(self._principal, data.chatId, data.userId)
        else:
            await chats.remove_member(self._principal, data.chatId, data.userId)
        return {"status": "SUCCESS"}

    async def _on_setRole(self, data: Any) -> dict[str, Any]:
        await self._services.chats.set_role(
            self._principal, data.chatId, data.userId, Role(data.role)
        )
        return {"status": "SUCCESS"}

    async def _on_updateChat(self, data: Any) -> dict[str, Any]:
        await self._services.chats.rename(self._principal, data.chatId, data.name)
        return {"status": "SUCCESS"}

    async def _on_getChats(self, data: Any) -> dict[str, Any]:
        return {"chats": await self._services.chats.list_chats(self._principal)}

    async def _on_getChat(self, data: Any) -> dict[str, Any]:
        return await self._services.chats.get_chat(self._principal, data.chatId)

    async def _on_typing(self, data: Any) -> None:
        await self._services.presence.typing(self._principal, data.chatId, data.state)

    async def _on_setPresence(self, data: Any) -> dict[str, Any]:
        await self._services.presence.announce(self._principal, online=data.state == "online")
        return {"state": data.state}

    async def _on_createAttachment(self, data: Any) -> dict[str, Any]:
        attachment = await self._services.media.upload_inline(
            self._principal, data.body, data.hash, data.fileName
        )
        return attachment.metadata()

    async def _on_getPresence(self, data: Any) -> dict[str, Any]:
        return {"presence": await self._services.presence.query(self._principal, data.userIds)}

    # -- the pump: queued events out, in order -----------------------------------

    def _request_pump(self) -> None:
        self._pump_wanted = True
        if self._pump_task is None and not self._finished:
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while self._pump_wanted:
                self._pump_wanted = False
                try:
                    # One deadline per burst, not one timer per frame (those cost
                    # 6 % of the server's CPU): a client that stopped reading
                    # blocks the burst, and a healthy burst takes milliseconds.
                    async with asyncio.timeout(self._limits.send_timeout):
                        while self._outbox:
                            texts, self._outbox = self._outbox, []
                            for text in texts:
                                await self._send_text(text)
                            self._resume_reader()
                        await self._send_queued()
                except TimeoutError:
                    # The client stopped reading. Its queue is safe in the database.
                    log.info("gateway.stalled", device_id=self.device_id)
                    self.close(CLOSE_POLICY, "not reading")
                    return
                except StorageError:
                    # The backlog could not be read: it is safe in the database. Try
                    # again shortly; no other event may come to wake the pump.
                    log.warning("gateway.pump_unavailable", device_id=self.device_id)
                    self._pump_wanted = True
                    await asyncio.sleep(PUMP_RETRY_SECONDS)
        finally:
            self._pump_task = None

    async def _send_queued(self) -> None:
        while True:
            room = self._limits.max_in_flight - (self._last_sent - self._last_acked)
            if room <= 0:
                return
            frames = self._take_pushed(room)
            if not frames and self._need_fetch:
                frames = await self._services.messaging.pending(
                    self.device_id, self._last_sent, room
                )
                self._need_fetch = len(frames) == room
            if not frames:
                break
            for frame in frames:
                await self._send(frame)
                self._last_sent = frame["data"]["inboxSeq"]
        if not self._drained and not self._need_fetch:
            self._drained = True
            await self._send({"event": "drained", "data": {"inboxSeq": self._last_sent}})

    def _take_pushed(self, room: int) -> list[dict[str, Any]]:
        pushed = self._pushed
        start = 0
        while start < len(pushed) and pushed[start]["data"]["inboxSeq"] <= self._last_sent:
            start += 1  # already sent (read back from the database)
        if start < len(pushed) and pushed[start]["data"]["inboxSeq"] != self._last_sent + 1:
            self._pushed = []  # a gap: another node's publish is late; the database has all
            self._need_fetch = True
            return []
        taken = pushed[start : start + room]
        self._pushed = pushed[start + room :]
        return taken

    # -- the socket ------------------------------------------------------------

    def _put(self, frame: dict[str, Any]) -> None:
        """Queue an answer for the pump."""
        self._outbox.append(encode(frame))
        self._request_pump()

    async def _send(self, frame: dict[str, Any]) -> None:
        await self._send_text(encode(frame))

    async def _send_text(self, text: str) -> None:
        if self._ws.application_state is not WebSocketState.CONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.send_text(text)

    async def _close_socket(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            if self._ws.application_state is WebSocketState.CONNECTED:
                await self._ws.close(code, reason)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


def _error_frame(request_id: Any, error: BaseException) -> dict[str, Any]:
    if isinstance(error, PigeonError):
        return _error(request_id, error.code, error.message)
    if isinstance(error, StorageError):
        return _error(request_id, "unavailable", "Storage is unavailable.")
    log.error("gateway.command_failed", exc_info=error)
    return _error(request_id, "internal_error", "The command failed.")


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as lost
