"""The baseline: a minimal relay on the same stack (FastAPI, uvicorn, websockets-sansio,
and the WebSocket protocol ``pigeon serve`` runs, with its coalesced writes).

It speaks the frames a Pigeon message costs, and does nothing else: no auth,
no storage, no queues. A ``sendMessage`` is forwarded at once to the peer
named by ``chatId`` as a ``message`` event and answered; the peer's ack of it
(cumulative, as Pigeon's clients send them) comes back to the sender as a
delivered ``receipt`` event, which the sender acks in turn. So per message, as
with Pigeon: three frames in (the send, the recipient's ack, the sender's ack
of the receipt) and three out (the answer, the event, the receipt), fewer
when acks cover several events. Pigeon's figures divided by the relay's show
what Pigeon's own work (auth, persistence, fan-out, receipts kept durably)
costs on the same machine in the same run.

    python -m bench.relay PORT
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from pigeon.gateway.transport import WebSocketProtocol

app = FastAPI()


@dataclass
class Peer:
    """One connected socket, its queue's last number, and who last sent to it."""

    socket: WebSocket
    inbox_seq: int = 0
    senders: dict[int, str] = field(default_factory=dict)  # inboxSeq -> the sender's name

    async def event(self, name: str, data: dict[str, object]) -> None:
        self.inbox_seq += 1
        data["inboxSeq"] = self.inbox_seq
        await self.socket.send_text(json.dumps({"event": name, "data": data}))


peers: dict[str, Peer] = {}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.websocket("/v1/ws")
async def relay(websocket: WebSocket) -> None:
    me = websocket.query_params["me"]
    await websocket.accept()
    peers[me] = mine = Peer(websocket)
    try:
        while True:
            frame = json.loads(await websocket.receive_text())
            kind, data = frame.get("type"), frame.get("data", {})
            if kind == "ack":
                await receipts(mine, data["upTo"])
            elif kind == "sendMessage":
                peer = peers.get(data["chatId"])
                if peer is not None:
                    event = {"message": data["message"], "kind": "text"}
                    await peer.event("message", event)
                    peer.senders[peer.inbox_seq] = me
                answer = {"id": frame["id"], "ok": True, "data": {}}
                await websocket.send_text(json.dumps(answer))
    except WebSocketDisconnect:
        pass
    finally:
        peers.pop(me, None)


async def receipts(reader: Peer, up_to: int) -> None:
    """The messages an ack covers, told to their senders: one receipt per sender."""
    covered = [seq for seq in reader.senders if seq <= up_to]
    last_by_sender: dict[str, int] = {}
    for seq in covered:
        last_by_sender[reader.senders.pop(seq)] = seq
    for name, seq in last_by_sender.items():
        sender = peers.get(name)
        if sender is not None:
            await sender.event("receipt", {"type": "delivered", "seq": seq})


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
