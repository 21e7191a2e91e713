"""The baseline: a minimal relay on the same stack (FastAPI, uvicorn, websockets-sansio,
and the WebSocket protocol ``pigeon serve`` runs, with its coalesced writes).

It forwards each ``sendMessage`` to the peer named by ``chatId`` and answers
the sender at once: no auth, no storage, no queues. Pigeon's figures divided
by the relay's show what Pigeon's own work (auth, persistence, fan-out,
acks) costs on the same machine in the same run.

    python -m bench.relay PORT
"""

from __future__ import annotations

import json
import sys

import uvicorn
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from pigeon.gateway.transport import WebSocketProtocol

app = FastAPI()
peers: dict[str, WebSocket] = {}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.websocket("/v1/ws")
async def relay(websocket: WebSocket) -> None:
    me = websocket.query_params["me"]
    await websocket.accept()
    peers[me] = websocket
    inbox_seq = 0
    try:
        while True:
            frame = json.loads(await websocket.receive_text())
            if frame.get("type") != "sendMessage":
                continue
            data = frame["data"]
            peer = peers.get(data["chatId"])
            if peer is not None:
                inbox_seq += 1
                event = {"message": data["message"], "kind": "text", "inboxSeq": inbox_seq}
                await peer.send_text(json.dumps({"event": "message", "data": event}))
            await websocket.send_text(json.dumps({"id": frame["id"], "ok": True, "data": {}}))
    except WebSocketDisconnect:
        pass
    finally:
        peers.pop(me, None)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        ws=WebSocketProtocol,
        ws_per_message_deflate=False,
        log_level="warning",
    )
