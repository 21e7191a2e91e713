"""A real Pigeon server on 127.0.0.1 in the test's event loop, and a WebSocket test client."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pigeon.gateway.transport import DEFAULT_SEND_TIMEOUT, paced_http_protocol, websocket_protocol


class LiveServer:
    """Serves ``app`` (its lifespan already entered by the caller) on an OS-chosen port."""

    def __init__(
        self,
        app: FastAPI,
        max_frame_bytes: int = 256 * 1024,
        newcomers_per_turn: int = 16,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        compression: bool = False,
    ) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_config=None,
            access_log=False,
            # the protocols `pigeon serve` runs
            http=paced_http_protocol(newcomers_per_turn),
            ws=websocket_protocol(send_timeout),
            ws_max_size=max_frame_bytes,
            ws_per_message_deflate=compression,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(500):
            if self._server.started:
                break
            if self._task.done():
                raise RuntimeError("the server exited before it started")
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("the server did not start within 5 s")
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)


class ProtocolViolation(AssertionError):
    """The server sent something the protocol does not allow (docs/protocol.md, Frames)."""


class ClosedBeforeAnswer(ConnectionError):
    """The socket closed while a command was waiting for its answer."""


class WsClient:
    """A device's socket: ``request`` waits for the answer, events pile up in ``events``.

    Nothing is dropped and nothing is swallowed. Events go to ``events`` in the
    order they arrived; answers that no ``request`` waits for (errors with a
    null id, answers to frames sent raw, answers that came after their request
    timed out) go to ``answers``. A frame that is not valid JSON, or neither an
    event nor an answer, fails the client: the error is raised by the next
    ``next_event``, ``next_answer``, ``request`` or ``close``, and by any
    request waiting at the time.
    """

    def __init__(self, socket: ClientConnection, auto_ack: bool = True) -> None:
        self.socket = socket
        self.auto_ack = auto_ack
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.failure: BaseException | None = None
        self._answers: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._barriers: set[str] = set()  # ping ids whose answers go to ``events``
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    async def open(
        cls, url: str, token: str | None = None, *, auto_ack: bool = True, **kwargs: Any
    ) -> Self:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        socket = await connect(url, additional_headers=headers, **kwargs)
        return cls(socket, auto_ack=auto_ack)

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                seq = self._route(raw)
                if seq is not None:
                    await self.send({"type": "ack", "data": {"upTo": seq}})
        except ConnectionClosed:
            pass  # the close code and reason below tell the tests what happened
        except Exception as exc:
            self._fail(exc)
        finally:
            self.close_code = self.socket.close_code
            self.close_reason = self.socket.close_reason or ""
            for future in self._answers.values():
                if not future.done():
                    future.set_exception(
                        self._violation()
                        if self.failure is not None
                        else ClosedBeforeAnswer(f"closed {self.close_code} {self.close_reason!r}")
                    )
            self._answers.clear()

    def _route(self, raw: str | bytes) -> int | None:
        """File one frame where it belongs; the inboxSeq to ack, if any."""
        if not isinstance(raw, str):
            raise ProtocolViolation(f"a binary frame: {raw[:200]!r}")
        frame = json.loads(raw)
        if not isinstance(frame, dict):
            raise ProtocolViolation(f"not a JSON object: {raw[:200]}")
        if "event" in frame:
            if not isinstance(frame.get("data"), dict):
                raise ProtocolViolation(f"an event without data: {raw[:200]}")
            self.events.put_nowait(frame)
            seq = frame["data"].get("inboxSeq")
            if self.auto_ack and seq is not None and frame["event"] != "drained":
                return int(seq)
            return None
        if "id" not in frame or not isinstance(frame.get("ok"), bool):
            raise ProtocolViolation(f"neither an event nor an answer: {raw[:200]}")
        request_id = frame["id"]
        if request_id in self._barriers:
            self._barriers.discard(request_id)
            self.events.put_nowait(frame)  # in its place among the events
            return None
        future = self._answers.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(frame)
        else:
            self.answers.put_nowait(frame)
        return None

    def _fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
        self.events.put_nowait(_FAILED)
        self.answers.put_nowait(_FAILED)

    def check(self) -> None:
        """Raise the error that failed the client, if one did."""
        if self.failure is not None:
            raise self._violation()

    def _violation(self) -> ProtocolViolation:
        error = ProtocolViolation(f"the server broke the protocol: {self.failure!r}")
        error.__cause__ = self.failure
        return error

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def request(self, type_: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command and return the whole answer frame (``ok`` true or false)."""
        self.check()
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = future
        frame: dict[str, Any] = {"id": request_id, "type": type_}
        if data is not None:
            frame["data"] = data
        await self.send(frame)
        return await asyncio.wait_for(future, 10)

    async def call(self, type_: str, data: dict[str, Any] | None = None) -> Any:
        """Send a command that must succeed and return its ``data``."""
        answer = await self.request(type_, data)
        assert answer["ok"], answer
        return answer["data"]

    async def next_event(self, name: str | None = None, timeout: float = 5) -> dict[str, Any]:
        """The next event (of type ``name``, skipping others)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._take(self.events)
                if name is None or frame.get("event") == name:
                    return frame

    async def next_answer(self, timeout: float = 5) -> dict[str, Any]:
        """The next answer no ``request`` waited for (an error with a null id, say)."""
        async with asyncio.timeout(timeout):
            return await self._take(self.answers)

    async def _take(self, queue: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
        self.check()
        frame = await queue.get()
        if frame is _FAILED:
            queue.put_nowait(frame)  # for whoever reads next
            self.check()
        return frame

    def queued(self) -> list[dict[str, Any]]:
        """The events that arrived and were not read yet (emptying ``events``)."""
        return self._drain(self.events)

    def unread(self) -> list[dict[str, Any]]:
        """Every frame not read yet: the events, then the unclaimed answers (emptying both)."""
        return self._drain(self.events) + self._drain(self.answers)

    def _drain(self, queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
        frames = []
        while not queue.empty():
            frame = queue.get_nowait()
            if frame is _FAILED:
                queue.put_nowait(frame)  # for whoever reads next
                self.check()
            frames.append(frame)
        return frames

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> list[dict[str, Any]]:
        """The events before the first one ``predicate`` accepts (which is read too)."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._take(self.events)
                if predicate(frame):
                    return frames
                frames.append(frame)

    async def ping_barrier(self, timeout: float = 10) -> list[dict[str, Any]]:
        """The events that arrived before the answer to a ``ping`` sent now.

        The server writes a socket's answers and its ephemeral events (typing,
        presence) in the order it produced them, so a ping sent after an action
        was answered is answered after any typing or presence that action
        caused. It is no barrier for queued events (messages, receipts): those
        are sent after the answers waiting with them; see ``tests.support``.
        """
        request_id = f"barrier-{next(self._ids)}"
        self._barriers.add(request_id)
        await self.send({"id": request_id, "type": "ping"})
        frames = await self.until(lambda f: "event" not in f and f["id"] == request_id, timeout)
        return frames

    async def collect(self, name: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        return [await self.next_event(name, timeout) for _ in range(count)]

    async def closed(self, timeout: float = 5) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def close(self) -> None:
        await self.socket.close()
        await asyncio.wait_for(asyncio.shield(self._reader), 5)
        self.check()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# Put in a queue when the client failed, so whoever waits on it wakes up and raises.
_FAILED: dict[str, Any] = {"failed": True}
