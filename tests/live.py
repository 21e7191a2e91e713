"""A real Pigeon server on 127.0.0.1 in the test's event loop, and a WebSocket test client."""

from __future__ import annotations

import asyncio
import itertools
import json
from types import TracebackType
from typing import Any, Self

import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from pigeon.gateway.transport import WebSocketProtocol


class LiveServer:
    """Serves ``app`` (its lifespan already entered by the caller) on an OS-chosen port."""

    def __init__(self, app: FastAPI, max_frame_bytes: int = 256 * 1024) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_config=None,
            access_log=False,
            ws=WebSocketProtocol,  # the protocol `pigeon serve` runs
            ws_max_size=max_frame_bytes,
            ws_per_message_deflate=False,
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


class WsClient:
    """A device's socket: ``request`` waits for the answer, events pile up in ``events``."""

    def __init__(self, socket: ClientConnection, auto_ack: bool = True) -> None:
        self.socket = socket
        self.auto_ack = auto_ack
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: dict[Any, asyncio.Future[dict[str, Any]]] = {}
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
                frame = json.loads(raw)
                if "event" in frame:
                    await self.events.put(frame)
                    seq = frame["data"].get("inboxSeq")
                    if self.auto_ack and seq is not None and frame["event"] != "drained":
                        await self.send({"type": "ack", "data": {"upTo": seq}})
                else:
                    future = self._answers.pop(frame.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                    else:
                        await self.events.put(frame)
        except Exception:  # noqa: S110 - the close code below tells the tests what happened
            pass
        finally:
            self.close_code = self.socket.close_code
            self.close_reason = self.socket.close_reason or ""

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def request(self, type_: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command and return the whole answer frame (``ok`` true or false)."""
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
                frame = await self.events.get()
                if name is None or frame.get("event") == name:
                    return frame

    async def collect(self, name: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        return [await self.next_event(name, timeout) for _ in range(count)]

    async def closed(self, timeout: float = 5) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def close(self) -> None:
        await self.socket.close()
        await asyncio.wait_for(asyncio.shield(self._reader), 5)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
