"""One device's WebSocket session: commands, events, acks, dedup and reconnects.

Three pieces share the socket:

* the *supervisor* task reads frames, resolves the answers of pending
  commands and buffers events; when the socket drops it reconnects with
  exponential backoff and jitter (bounded), unless the close is final
  (1008 ``invalid_token``/``device_revoked``, 4409 replaced);
* :meth:`Connection.events` hands buffered events to the application, in the
  order the server sent them, dropping messages it has already handed out;
* the *acker* task sends the cumulative ``ack`` for the last queued event
  the application is done with (acks coalesce: one frame may cover many
  events). The application is done with an event when it asks
  :meth:`Connection.events` for the next one (or closes the connection), so
  whatever it does in the body of its ``async for`` loop, such as
  downloading a message's attachments, happens before the server may delete
  the message.

Acks are per socket: the server only accepts acks of events it sent on that
socket, so an event received on an earlier socket is not acked when handed
out; the server sends it again after the reconnect, and that copy (dropped
as a duplicate) is acked instead.

With a :class:`~pigeon.client.LocalStore` (``store=``), :meth:`Connection.events`
writes each message and receipt to it before handing it out (the queued
events buffered behind it in the same transaction), so nothing is acked that
is not stored; the store also remembers, across processes, which messages
the application has finished with.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import random
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import InvalidStatus, WebSocketException

from pigeon.client._errors import (
    ApiError,
    AuthenticationError,
    CommandError,
    ConnectionClosed,
    NetworkError,
    PigeonError,
    RequestTimeout,
    SendFailed,
    StoreError,
)
from pigeon.client._models import (
    Attachment,
    ChatDetails,
    ChatSummary,
    CreatedChat,
    DrainedEvent,
    Event,
    MessageEvent,
    Presence,
    ReceiptEvent,
    SentMessage,
    Session,
    chat_details,
    chat_summary,
    parse_event,
    parse_time,
    presence,
)
from pigeon.client._store import LocalStore, StoredMessage

__all__ = ["Connection", "ReconnectPolicy"]

log = logging.getLogger("pigeon.client")

USER_AGENT = "pigeon-client/0.1"
CLOSE_POLICY = 1008
CLOSE_REPLACED = 4409
CLOSE_ABNORMAL = 1006
# Closes that mean this client sent something the server cannot take: a new
# socket would not fare better.
_PROTOCOL_CLOSES = frozenset({1002, 1003, 1007, 1009, 1010})
_AUTH_REASONS = frozenset({"invalid_token", "device_revoked", "auth_timeout", "auth_required"})
# Queued events stored in one transaction at most (the server sends at most 256 unacked).
_STORE_BATCH = 256


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential backoff with jitter between reconnect attempts.

    Attempt ``n`` (from 0) waits ``min(max_delay, initial_delay * multiplier**n)``
    shortened by a random fraction of up to ``jitter``. After ``max_attempts``
    failed attempts the connection gives up with ``ConnectionClosed``
    (``reconnect_failed``); ``max_attempts=0`` never reconnects.
    """

    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")
        if self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (counted from 0)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** min(attempt, 64))
        return base * (1.0 - self.jitter * random.random())  # noqa: S311 (not cryptographic)


@dataclass(slots=True)
class _Item:
    """A buffered event: the socket it came on, its inbox seq (queued events only)."""

    generation: int
    inbox_seq: int | None
    event: Event | None  # None: an event this SDK does not know (acked all the same)
    news: bool | None = None  # with a store: None until stored, then whether to hand it out


class _Lost(Exception):
    """The socket dropped before the answer came (internal: retried or turned into a timeout)."""


class Connection:
    """A live WebSocket session of one device.

    Open it with ``async with client.connect(session) as conn:`` (or
    ``await conn.open()`` and ``await conn.close()``). Commands wait for the
    connection when it is reconnecting; each attempt is bounded by
    ``request_timeout``. Only one task should iterate :meth:`events` at a time.
    """

    def __init__(
        self,
        url: str,
        session: Session,
        *,
        refresh: Callable[[Session], Awaitable[Session]] | None = None,
        on_session: Callable[[Session], None] | None = None,
        request_timeout: float = 10.0,
        send_attempts: int = 5,
        reconnect: ReconnectPolicy | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        max_frame_bytes: int = 256 * 1024,
        max_receive_bytes: int = 8 * 1024 * 1024,
        max_buffered_ephemeral: int = 1000,
        dedupe_window: int = 10_000,
        store: LocalStore | None = None,
    ) -> None:
        if request_timeout <= 0 or open_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if send_attempts < 1:
            raise ValueError("send_attempts must be at least 1")
        self._url = url
        self._session = session
        self._refresh = refresh
        self._on_session = on_session
        self._request_timeout = request_timeout
        self._send_attempts = send_attempts
        self._policy = reconnect or ReconnectPolicy()
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._max_frame_bytes = max_frame_bytes
        self._max_receive_bytes = max_receive_bytes
        self._max_ephemeral = max_buffered_ephemeral
        self._dedupe_window = dedupe_window
        self._store = store
        self._handled: list[tuple[str, str]] = []  # messages done with, not yet marked in the store

        self._socket: ClientConnection | None = None
        self._generation = 0
        self._user_id = session.user_id
        self._device_id = session.device_id
        # Set while connected, and once the connection is finished (closed or failed).
        self._ready = asyncio.Event()
        self._answers: dict[int, asyncio.Future[dict[str, Any] | None]] = {}
        self._ids = itertools.count(1)
        self._buffer: deque[_Item] = deque()
        self._buffered_ephemeral = 0
        self._buffer_changed = asyncio.Event()
        self._ack_wake = asyncio.Event()
        self._ack_target = 0  # highest inbox seq released on the current socket
        self._held: _Item | None = None  # handed out; acked when the next one is asked for
        self._acked = 0  # highest inbox seq acked on the current socket
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._receipts: dict[tuple[str, str, str], int] = {}
        self._failure: PigeonError | None = None
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._acker: asyncio.Task[None] | None = None
        self._reconnects = 0

    # -- state -------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The current session (new tokens after an automatic refresh)."""
        return self._session

    @property
    def user_id(self) -> str:
        return self._user_id

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def connected(self) -> bool:
        """Whether a socket is up right now (False while reconnecting)."""
        return self._socket is not None

    @property
    def reconnects(self) -> int:
        """How many times the connection came back after the socket dropped."""
        return self._reconnects

    # -- opening and closing -----------------------------------------------------------

    async def open(self) -> Self:
        """Connect and authenticate; raises ``AuthenticationError`` or ``NetworkError``."""
        if self._supervisor is not None or self._closed:
            raise RuntimeError("a Connection is opened once")
        if self._store is not None:
            await self._store.bind(self._session.user_id, self._session.device_id)
        socket, ready = await self._open_socket()
        self._install(socket, ready)
        self._supervisor = asyncio.create_task(self._supervise(), name="pigeon-client-reader")
        self._acker = asyncio.create_task(self._ack_loop(), name="pigeon-client-acker")
        return self

    async def close(self) -> None:
        """Close the socket and stop reconnecting (idempotent).

        Commands still waiting fail with ``ConnectionClosed`` (``closed``);
        :meth:`events` stops. Events handed out are acked first (the last
        one included, unless :meth:`hold_back` was called); events not yet
        handed out are not, so the server sends them again next time.
        """
        if self._closed:
            return
        self._closed = True
        self._release_held()
        socket = self._socket
        unacked = self._ack_target if self._ack_target > self._acked else 0
        self._finish()
        tasks = [task for task in (self._supervisor, self._acker) if task is not None]
        for task in tasks:
            task.cancel()
        try:
            await self._flush_handled()
            if socket is not None:
                if unacked:
                    with contextlib.suppress(WsConnectionClosed, TimeoutError):
                        async with asyncio.timeout(self._close_timeout):
                            await socket.send(_ack_frame(unacked))
                await socket.close()  # bounded by close_timeout
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=self._close_timeout)

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- events ------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Events in the order the server sent them, each message exactly once.

        A queued event (message, receipt) is acked once the application is
        done with it: when it asks this iterator for the next event, or
        closes the connection. The body of the ``async for`` loop therefore
        runs before the ack, so download a message's attachments there: the
        server deletes them once every recipient device acked the message.
        Duplicates the server sends again after a reconnect are dropped
        (messages by ``(chat_id, message_id)``, receipts that do not move
        ``up_to_seq`` forward) and acked. The iterator ends when the
        application closes the connection, and raises ``AuthenticationError``
        or ``ConnectionClosed`` when the connection ends for good.

        With a store, each message and receipt is stored before it is handed
        out (``StoreError`` if that fails: nothing is acked, and the next
        iteration tries again), and a message the store already has is
        handed out only if the application never finished with it.
        """
        while True:
            self._release_held()
            item = await self._next_item()
            if item is None:
                return
            if self._store is not None and item.news is None and _storable(item):
                await self._keep(item, self._store)
            event = self._hand_over(item)
            if event is None:
                self._release(item)  # a duplicate, or an event this SDK does not know
                continue
            self._held = item
            yield event

    def hold_back(self) -> None:
        """The application did not finish the event last handed out: do not ack it.

        For an application stopping in the middle of its work on an event (a
        download interrupted by the user): the event is not acked, by
        :meth:`close` or later, so the server sends it again on the next
        connection (with a store, it is handed out again then).
        """
        self._held = None

    async def _next_item(self) -> _Item | None:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed:
                return None
            if self._buffer:
                item = self._buffer.popleft()
                if item.inbox_seq is None:
                    self._buffered_ephemeral -= 1
                return item
            self._buffer_changed.clear()
            # Woken by the next event, by close() or by a final failure. A dead
            # socket is always noticed (keepalive pings), so this wait ends.
            await self._buffer_changed.wait()

    async def _keep(self, first: _Item, store: LocalStore) -> None:
        """Store ``first`` and the queued events buffered behind it, in one transaction.

        If that fails (or is cancelled), ``first`` goes back to the head of
        the buffer: an event not stored must be neither handed out nor, by
        a later cumulative ack, acked.
        """
        behind = (item for item in self._buffer if item.news is None and _storable(item))
        batch = [first, *itertools.islice(behind, _STORE_BATCH - 1)]
        events = [
            item.event for item in batch if isinstance(item.event, MessageEvent | ReceiptEvent)
        ]
        try:
            news = await store.record(events)
        except BaseException:
            self._buffer.appendleft(first)
            raise
        for item, fresh in zip(batch, news, strict=True):
            item.news = fresh

    def _release_held(self) -> None:
        item, self._held = self._held, None
        if item is not None:
            if self._store is not None and isinstance(item.event, MessageEvent):
                self._handled.append((item.event.chat_id, item.event.message_id))
            self._release(item)

    async def _flush_handled(self) -> None:
        """Mark the messages the application is done with in the store (before their ack)."""
        if self._store is None or not self._handled:
            return
        keys, self._handled = self._handled, []
        try:
            await self._store.mark_handled(keys)
        except (StoreError, RuntimeError) as exc:  # stored all the same: acking them is right
            log.warning("pigeon.client: could not mark messages handled: %s", exc)

    def _release(self, item: _Item) -> None:
        """The application is done with ``item``: ack it (if it came on this socket)."""
        seq = item.inbox_seq
        if seq is not None and item.generation == self._generation and seq > self._ack_target:
            self._ack_target = seq
            self._ack_wake.set()

    def _hand_over(self, item: _Item) -> Event | None:
        """The event to give the application; None to drop it (duplicate, unknown)."""
        event = item.event
        if item.news is False:  # the store already has it, handled or not moving forward
            return None
        if isinstance(event, MessageEvent):
            key = (event.chat_id, event.message_id)
            if key in self._seen:
                self._seen.move_to_end(key)
                return None
            self._seen[key] = None
            if len(self._seen) > self._dedupe_window:
                self._seen.popitem(last=False)
        elif isinstance(event, ReceiptEvent):
            receipt_key = (event.chat_id, event.type, event.user_id)
            if self._receipts.get(receipt_key, 0) >= event.up_to_seq:
                return None
            self._receipts[receipt_key] = event.up_to_seq
        return event

    # -- commands ----------------------------------------------------------------------

    async def send_message(
        self,
        chat_id: str,
        text: str = "",
        reply_to: str | None = None,
        *,
        attachments: Sequence[str | Attachment] = (),
        client_message_id: str | None = None,
        reply_excerpt: str | None = None,
        forwarded_from: tuple[str, str] | None = None,
    ) -> SentMessage:
        """Send a message (text, files or both); returns once the server stored it.

        ``attachments`` are files uploaded with ``PigeonClient.upload_file``
        (the :class:`Attachment` or its id; at most 10). ``reply_excerpt``
        (the start of the quoted text) goes with ``reply_to`` as its quote;
        ``forwarded_from`` (chat id, message id) marks a forward (see
        ``forward``). A ``clientMessageId``
        (uuid4) is generated unless given. After a timeout or a dropped
        socket the same id is sent again (up to ``send_attempts`` times), so
        the message is stored once; at the end ``SendFailed`` carries the id
        for a later retry.
        """
        cmid = client_message_id or str(uuid.uuid4())
        data: dict[str, Any] = {
            "chatId": chat_id,
            "clientMessageId": cmid,
            "message": text,
            "attachments": [
                item.attachment_id if isinstance(item, Attachment) else item for item in attachments
            ],
        }
        if reply_to is not None:
            data["replyTo"] = (
                reply_to
                if reply_excerpt is None
                else {"messageId": reply_to, "excerpt": reply_excerpt}
            )
        if forwarded_from is not None:
            data["forwardedFrom"] = {"chatId": forwarded_from[0], "messageId": forwarded_from[1]}
        try:
            answer = await self._call("sendMessage", data, retry=True)
        except RequestTimeout as exc:
            raise SendFailed(exc.code, exc.message, cmid) from exc
        sent = SentMessage(
            chat_id=chat_id,
            message_id=answer["messageId"],
            seq=int(answer["seq"]),
            created_at=parse_time(answer["createdAt"]) or _missing("createdAt"),
            client_message_id=cmid,
            duplicate=bool(answer.get("duplicate", False)),
        )
        if self._store is not None:
            await self._keep_sent(self._store, sent, text, reply_to, attachments)
        return sent

    async def _keep_sent(
        self,
        store: LocalStore,
        sent: SentMessage,
        text: str,
        reply_to: str | None,
        attachments: Sequence[str | Attachment],
    ) -> None:
        """Keep our own message: the server never sends it back to the device that sent it."""
        files = tuple(
            item if isinstance(item, Attachment) else Attachment(item, "", 0, item)
            for item in attachments
        )
        message = StoredMessage(
            chat_id=sent.chat_id,
            message_id=sent.message_id,
            seq=sent.seq,
            kind="text",
            sender_id=self._user_id,
            sender_device_id=self._device_id,
            text=text,
            attachments=files,
            created_at=sent.created_at,
            reply_to=reply_to,
        )
        try:
            await store.record_sent(message)
        except StoreError as exc:  # it is sent all the same: say so, do not make it fail
            log.warning("pigeon.client: could not keep sent message %s: %s", sent.message_id, exc)

    async def forward(
        self,
        chat_id: str,
        message: MessageEvent | StoredMessage,
        *,
        client_message_id: str | None = None,
    ) -> SentMessage:
        """Forward ``message`` (its text and files, by id) to ``chat_id``.

        The server counts the hops from the message; one forwarded many times
        goes to one chat at a time (``forward_limited`` until a minute passed).
        """
        return await self.send_message(
            chat_id,
            message.text,
            attachments=[a.attachment_id for a in message.attachments],
            client_message_id=client_message_id,
            forwarded_from=(message.chat_id, message.message_id),
        )

    async def react(self, chat_id: str, message_id: str, emoji: str) -> datetime:
        """Set this user's reaction to a message (one emoji; ``""`` removes it); when."""
        data = {"chatId": chat_id, "messageId": message_id, "emoji": emoji}
        answer = await self._call("react", data, retry=True)  # the same reaction again is no change
        return parse_time(answer["at"]) or _missing("at")

    async def edit_message(self, chat_id: str, message_id: str, text: str) -> datetime:
        """Replace the text of a message this user sent (within the server's edit window)."""
        data = {"chatId": chat_id, "messageId": message_id, "text": text}
        answer = await self._call("editMessage", data, retry=True)
        return parse_time(answer["at"]) or _missing("at")

    async def delete_message(self, chat_id: str, message_id: str) -> datetime:
        """Delete a message for everyone: this user's own, or any as a group admin.

        Not retried: a retry after a delete that went through would be told
        ``message_not_found``.
        """
        data = {"chatId": chat_id, "messageId": message_id}
        answer = await self._call("deleteMessage", data)
        return parse_time(answer["at"]) or _missing("at")

    async def set_disappearing(self, chat_id: str, seconds: int) -> None:
        """Make messages sent from now on disappear after ``seconds`` (86400, 604800 or
        7776000; 0 turns it off): any member of a 1:1 chat, an admin of a group."""
        await self._call("setDisappearing", {"chatId": chat_id, "seconds": seconds}, retry=True)

    async def create_chat(
        self, participants: Sequence[str], name: str | None = None
    ) -> CreatedChat:
        """A 1:1 chat (one other user, no name; the existing one if any) or a group.

        Asking for a 1:1 chat is idempotent, so it is retried like a send;
        creating a group is not retried (``RequestTimeout`` if unanswered).
        """
        people = list(dict.fromkeys(participants))
        data: dict[str, Any] = {"participants": people}
        if name is not None:
            data["name"] = name
        direct = name is None and len(set(people) - {self._user_id}) == 1
        answer = await self._call("createChat", data, retry=direct)
        return CreatedChat(chat_id=answer["chatId"], created=bool(answer["created"]))

    async def add_member(self, chat_id: str, user_id: str) -> None:
        """Add a user to a group (admins only)."""
        await self._modify(chat_id, user_id, "ADD")

    async def remove_member(self, chat_id: str, user_id: str) -> None:
        """Remove a user from a group (admins only, or yourself)."""
        await self._modify(chat_id, user_id, "REMOVE")

    async def leave(self, chat_id: str) -> None:
        """Leave a group (the longest-standing member becomes admin if you were the last)."""
        await self._modify(chat_id, self._user_id, "REMOVE")

    async def set_role(self, chat_id: str, user_id: str, role: Literal["admin", "member"]) -> None:
        """Make a member admin or member again (admins only)."""
        await self._call("setRole", {"chatId": chat_id, "userId": user_id, "role": role})

    async def rename(self, chat_id: str, name: str) -> None:
        """Rename a group (admins only)."""
        await self._call("updateChat", {"chatId": chat_id, "name": name})

    async def get_chats(self) -> list[ChatSummary]:
        """The chats this user is in; with a store, each with its ``unread`` count."""
        answer = await self._call("getChats", {}, retry=True)
        chats = [chat_summary(chat) for chat in answer["chats"]]
        if self._store is None:
            return chats
        return [
            dataclasses.replace(chat, unread=await self._store.unread(chat.chat_id, chat.read_seq))
            for chat in chats
        ]

    async def get_chat(self, chat_id: str) -> ChatDetails:
        """One chat with its members."""
        return chat_details(await self._call("getChat", {"chatId": chat_id}, retry=True))

    async def mark_read(self, chat_id: str, up_to_seq: int) -> int:
        """Mark the chat read up to ``up_to_seq``; returns the mark (clamped to the last seq)."""
        answer = await self._call("markRead", {"chatId": chat_id, "upToSeq": up_to_seq}, retry=True)
        mark = int(answer["upToSeq"])
        if self._store is not None:
            await self._store.record_read_mark(chat_id, mark)
        return mark

    async def typing(self, chat_id: str, composing: bool = True) -> None:
        """Tell the chat's other members that this user is typing (or stopped)."""
        state = "composing" if composing else "paused"
        await self._call("typing", {"chatId": chat_id, "state": state})

    async def set_presence(self, state: Literal["online", "offline"]) -> None:
        """Appear online or offline to contacts."""
        await self._call("setPresence", {"state": state}, retry=True)

    async def get_presence(self, user_ids: Sequence[str]) -> list[Presence]:
        """Presence of those of ``user_ids`` who share a chat with this user."""
        answer = await self._call("getPresence", {"userIds": list(user_ids)}, retry=True)
        return [presence(entry) for entry in answer["presence"]]

    async def ping(self) -> float:
        """Round trip time to the server, in seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._call("ping", {})
        return loop.time() - started

    async def _modify(self, chat_id: str, user_id: str, operation: str) -> None:
        await self._call(
            "modifyChatParticipants",
            {"chatId": chat_id, "userId": user_id, "operation": operation},
        )

    async def _call(self, type_: str, data: dict[str, Any], *, retry: bool = False) -> Any:
        """Send a command and return its answer's data; ``retry`` for idempotent commands."""
        attempts = self._send_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._request(type_, data)
            except _Lost:
                if attempt == attempts:
                    raise RequestTimeout(
                        "connection_lost", f"the connection dropped before {type_} was answered"
                    ) from None
            except RequestTimeout:
                if attempt == attempts:
                    raise
            log.info("pigeon.client: retrying %s (attempt %d of %d)", type_, attempt + 1, attempts)
        raise AssertionError("unreachable")

    async def _request(self, type_: str, data: dict[str, Any]) -> Any:
        """One attempt: wait for the socket, send, wait for the answer (all bounded)."""
        if self._supervisor is None and not self._closed:
            raise RuntimeError("open the connection first")
        request_id = next(self._ids)
        payload = _encode({"id": request_id, "type": type_, "data": data})
        if len(payload.encode()) > self._max_frame_bytes:
            raise CommandError("frame_too_large", f"the {type_} frame exceeds the server's limit")
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._request_timeout):
                socket = await self._wait_connected()
                self._answers[request_id] = future
                try:
                    await socket.send(payload)
                except WsConnectionClosed:
                    if self._socket is socket:
                        self._go_offline()  # the reader notices soon; wait for the next socket
                    raise _Lost from None
                answer = await future
        except TimeoutError:
            raise RequestTimeout(
                "timeout", f"no answer to {type_} within {self._request_timeout:g} s"
            ) from None
        finally:
            self._answers.pop(request_id, None)
        if answer is None:
            self._raise_if_finished()
            raise _Lost
        if answer.get("ok"):
            return answer.get("data")
        error = answer.get("error") or {}
        raise CommandError(str(error.get("code", "error")), str(error.get("message", "")))

    async def _wait_connected(self) -> ClientConnection:
        while True:
            self._raise_if_finished()
            if self._socket is not None:
                return self._socket
            await self._ready.wait()  # set on connect and when finished

    def _raise_if_finished(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ConnectionClosed("closed", "the connection was closed")

    # -- the socket --------------------------------------------------------------------

    async def _open_socket(self) -> tuple[ClientConnection, dict[str, Any]]:
        try:
            return await self._handshake()
        except AuthenticationError as exc:
            if exc.code != "invalid_token" or self._refresh is None:
                raise
        log.info("pigeon.client: the access token was refused; refreshing it")
        self._session = await self._refresh(self._session)
        if self._on_session is not None:
            self._on_session(self._session)
        return await self._handshake()

    async def _handshake(self) -> tuple[ClientConnection, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self._session.access_token}"}
        try:
            socket = await connect(
                self._url,
                additional_headers=headers,
                user_agent_header=USER_AGENT,
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=self._close_timeout,
                max_size=self._max_receive_bytes,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise NetworkError(
                "handshake_failed", f"the server refused the WebSocket upgrade (HTTP {status})"
            ) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise NetworkError("unreachable", f"{self._url}: {exc!r}") from exc
        try:
            async with asyncio.timeout(self._open_timeout):
                raw = await socket.recv()
        except WsConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else CLOSE_ABNORMAL
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            error = _final_error(code, reason)
            raise error or NetworkError(
                "closed", f"the server closed the socket ({code} {reason})".strip()
            ) from None
        except TimeoutError:
            _abort(socket)
            raise NetworkError("timeout", "no ready event from the server") from None
        except BaseException:
            _abort(socket)
            raise
        frame = _decode(raw)
        if frame is None or frame.get("event") != "ready":
            _abort(socket)
            raise NetworkError("protocol_error", "the server did not send the ready event")
        ready = frame.get("data")
        return socket, ready if isinstance(ready, dict) else {}

    def _install(self, socket: ClientConnection, ready: dict[str, Any]) -> None:
        self._generation += 1
        self._socket = socket
        self._ack_target = 0
        self._acked = 0
        self._user_id = str(ready.get("userId", self._user_id))
        self._device_id = str(ready.get("deviceId", self._device_id))
        self._ready.set()

    async def _supervise(self) -> None:
        try:
            while not self._closed:
                socket = self._socket
                if socket is None:
                    return
                await self._read(socket, self._generation)
                self._go_offline()
                code, reason = await self._close_of(socket)
                if self._closed:
                    return
                error = _final_error(code, reason)
                if error is None:
                    log.info("pigeon.client: socket closed (%s %s); reconnecting", code, reason)
                    error = await self._reconnect(code, reason)
                if error is not None:
                    self._fail(error)
                    return
        except Exception as exc:  # a bug here must not leave the application waiting
            log.exception("pigeon.client: the connection failed")
            self._fail(ConnectionClosed("internal_error", repr(exc)))

    async def _read(self, socket: ClientConnection, generation: int) -> None:
        try:
            async for raw in socket:
                self._on_frame(raw, generation)
        except WsConnectionClosed:
            pass

    async def _close_of(self, socket: ClientConnection) -> tuple[int, str]:
        try:
            async with asyncio.timeout(self._close_timeout):
                await socket.wait_closed()
        except TimeoutError:
            _abort(socket)
        return socket.close_code or CLOSE_ABNORMAL, socket.close_reason or ""

    async def _reconnect(self, code: int, reason: str) -> PigeonError | None:
        """Reconnect with backoff; None when connected (or closed meanwhile), else the error."""
        for attempt in range(self._policy.max_attempts):
            await asyncio.sleep(self._policy.delay(attempt))
            if self._closed:
                return None
            try:
                socket, ready = await self._open_socket()
            except NetworkError as exc:
                log.info("pigeon.client: reconnect attempt %d failed: %s", attempt + 1, exc)
                continue
            except ApiError as exc:  # refreshing the token failed
                if exc.status >= 500 or exc.status == 429:
                    continue
                return exc
            except PigeonError as exc:
                return exc
            self._reconnects += 1
            self._install(socket, ready)
            return None
        return ConnectionClosed(
            "reconnect_failed",
            f"gave up after {self._policy.max_attempts} reconnect attempts "
            f"(the socket closed with {code} {reason})".strip(),
            close_code=code,
        )

    def _on_frame(self, raw: str | bytes, generation: int) -> None:
        frame = _decode(raw)
        if frame is None:
            log.warning("pigeon.client: ignoring a frame that is not a JSON object")
            return
        name = frame.get("event")
        if isinstance(name, str):
            data = frame.get("data")
            self._on_event(name, data if isinstance(data, dict) else {}, generation)
            return
        request_id = frame.get("id")
        future = self._answers.pop(request_id, None) if isinstance(request_id, int) else None
        if future is not None:
            if not future.done():
                future.set_result(frame)
        elif frame.get("ok") is False:
            log.warning("pigeon.client: the server reported %s", frame.get("error"))

    def _on_event(self, name: str, data: dict[str, Any], generation: int) -> None:
        if name == "ready":
            return
        try:
            event = parse_event(name, data)
        except (KeyError, TypeError, ValueError):
            log.warning("pigeon.client: ignoring a malformed %s event", name)
            event = None
        inbox_seq = data.get("inboxSeq")
        if isinstance(event, DrainedEvent) or not isinstance(inbox_seq, int):
            inbox_seq = None
        if inbox_seq is None:
            if event is None:
                return
            if self._buffered_ephemeral >= self._max_ephemeral:
                log.warning("pigeon.client: events are not being read; dropping a %s event", name)
                return
            self._buffered_ephemeral += 1
        self._buffer.append(_Item(generation, inbox_seq, event))
        self._buffer_changed.set()

    async def _ack_loop(self) -> None:
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            socket, target = self._socket, self._ack_target
            if socket is None or target <= self._acked:
                continue
            await self._flush_handled()
            try:
                await socket.send(_ack_frame(target))
            except WsConnectionClosed:
                continue  # the events come again on the next socket
            if socket is self._socket:
                self._acked = max(self._acked, target)

    def _go_offline(self) -> None:
        self._socket = None
        self._ready.clear()
        self._release_answers()

    def _fail(self, error: PigeonError) -> None:
        if self._failure is None:
            self._failure = error
        log.info("pigeon.client: connection ended: %s", error)
        self._finish()

    def _finish(self) -> None:
        """Wake everyone waiting: the connection is over (closed or failed)."""
        self._socket = None
        self._release_answers()
        self._ready.set()
        self._buffer_changed.set()

    def _release_answers(self) -> None:
        answers, self._answers = self._answers, {}
        for future in answers.values():
            if not future.done():
                future.set_result(None)


def _storable(item: _Item) -> bool:
    """A queued message or receipt: what a store keeps before it may be acked."""
    return item.inbox_seq is not None and isinstance(item.event, MessageEvent | ReceiptEvent)


def _final_error(code: int, reason: str) -> PigeonError | None:
    """The error for a close that must not be retried; None when reconnecting may help."""
    if code == CLOSE_POLICY and reason in _AUTH_REASONS:
        return AuthenticationError(reason, f"the server closed the connection: {reason}", code)
    if code == CLOSE_REPLACED:
        return ConnectionClosed(
            "replaced", reason or "another connection of this device took over", code
        )
    if code in _PROTOCOL_CLOSES:
        return ConnectionClosed("protocol_error", f"closed with {code} {reason}".strip(), code)
    return None


def _encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _ack_frame(up_to: int) -> str:
    return _encode({"type": "ack", "data": {"upTo": up_to}})


def _decode(raw: str | bytes) -> dict[str, Any] | None:
    try:
        frame = json.loads(raw)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def _abort(socket: ClientConnection) -> None:
    """Drop a socket at once (no closing handshake): safe while being cancelled."""
    socket.transport.abort()


def _missing(name: str) -> Any:
    raise CommandError("protocol_error", f"the answer has no {name}")
