"""A simple load script: 1:1 pairs sending as fast as the server allows.

    python bench/load.py --database sqlite --pairs 50 --window 20 --seconds 10

Starts ``pigeon serve`` on 127.0.0.1 (pinned to CPU 0 when ``taskset`` exists),
registers the devices over HTTP (codes from the console outbox), then each
sender keeps ``window`` unanswered sends in flight. Latency is end to end:
from the sender's send to the recipient's receipt of the message event.
Prints messages/s, latency percentiles and both sides' CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import connect

POSTGRES = os.environ.get("PIGEON_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, database_url: str | None, cpu: int | None) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        env = {
            **os.environ,
            "PIGEON_DATA_DIR": str(data_dir),
            "PIGEON_PORT": str(self.port),
            "PIGEON_LOG_LEVEL": "WARNING",
            "PIGEON_SEND_CODE_LIMIT_PER_NUMBER": "100/second",
            "PIGEON_SEND_CODE_LIMIT_PER_IP": "100000/hour",
            "PIGEON_VERIFY_LIMIT_PER_IP": "100000/hour",
        }
        if database_url:
            env["PIGEON_DATABASE_URL"] = database_url
        command = [sys.executable, "-m", "pigeon", "serve"]
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpu), *command]
        self.process = subprocess.Popen(command, env=env)
        if os.environ.get("PIGEON_BENCH_PID_FILE"):
            Path(os.environ["PIGEON_BENCH_PID_FILE"]).write_text(str(self.process.pid))
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_ready(self) -> None:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError("server did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def register(http: httpx.AsyncClient, outbox: Path, phone: str) -> dict[str, Any]:
    response = await http.post("/v1/auth/code", json={"phone": phone})
    response.raise_for_status()
    code = None
    for line in reversed(outbox.read_text().splitlines()):
        entry = json.loads(line)
        if entry["to"] == phone:
            code = re.search(r"\b(\d{6})\b", entry["body"]).group(1)  # type: ignore[union-attr]
            break
    body = {"phone": phone, "code": code, "device": {"name": "bench", "platform": "cli"}}
    response = await http.post("/v1/auth/verify", json=body)
    response.raise_for_status()
    return dict(response.json())


class Device:
    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.latencies: list[float] = []
        self.received = 0
        self.next_id = 0

    async def call(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.answers[self.next_id] = future
        await self.socket.send(json.dumps({"id": self.next_id, "type": type_, "data": data}))
        return await future

    async def read(self) -> None:
        async for raw in self.socket:
            frame = json.loads(raw)
            if "id" in frame and frame["id"] in self.answers:
                self.answers.pop(frame["id"]).set_result(frame)
            elif frame.get("event") == "message":
                data = frame["data"]
                sent_at = float(data["message"].split(" ", 1)[0])
                self.latencies.append(time.perf_counter() - sent_at)
                self.received += 1
                await self.socket.send(
                    json.dumps({"type": "ack", "data": {"upTo": data["inboxSeq"]}})
                )
            elif "inboxSeq" in frame.get("data", {}) and frame.get("event") != "drained":
                await self.socket.send(
                    json.dumps({"type": "ack", "data": {"upTo": frame["data"]["inboxSeq"]}})
                )


async def open_device(ws_url: str, session: dict[str, Any]) -> tuple[Device, asyncio.Task[None]]:
    socket = await connect(
        ws_url,
        additional_headers={"Authorization": f"Bearer {session['access_token']}"},
        compression=None,
        max_queue=None,
    )
    device = Device(socket)
    return device, asyncio.create_task(device.read())


async def sender_loop(device: Device, chat_id: str, window: int, deadline: float) -> int:
    sent = 0

    async def one_lane() -> None:
        nonlocal sent
        while time.perf_counter() < deadline:
            text = f"{time.perf_counter():.9f} hello"
            answer = await device.call(
                "sendMessage",
                {"chatId": chat_id, "clientMessageId": uuid.uuid4().hex, "message": text},
            )
            if not answer["ok"]:
                raise RuntimeError(answer)
            sent += 1

    await asyncio.gather(*(one_lane() for _ in range(window)))
    return sent


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
    database_url = None
    db_name = f"pigeon_bench_{uuid.uuid4().hex[:8]}"
    if args.database == "postgresql":
        conn = await asyncpg.connect(POSTGRES)
        await conn.execute(f'CREATE DATABASE "{db_name}"')
        await conn.close()
        base = POSTGRES.rsplit("/", 1)[0]
        database_url = f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{db_name}"
    server = Server(data_dir, database_url, cpu=0)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    try:
        await server.wait_ready()
        ws_url = f"ws://127.0.0.1:{server.port}/v1/ws"
        outbox = data_dir / "sms-outbox.jsonl"
        async with httpx.AsyncClient(base_url=server.url) as http:
            sessions = [
                await register(http, outbox, f"+1415{5550000 + i:07d}")
                for i in range(args.pairs * 2)
            ]
        devices = [await open_device(ws_url, s) for s in sessions]
        chats = []
        for i in range(args.pairs):
            sender, receiver = devices[2 * i][0], devices[2 * i + 1][0]
            answer = await sender.call(
                "createChat", {"participants": [sessions[2 * i + 1]["user_id"]]}
            )
            chats.append(answer["data"]["chatId"])
            del receiver
        cpu_server, cpu_self = server.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        deadline = started + args.seconds
        counts = await asyncio.gather(
            *(
                sender_loop(devices[2 * i][0], chats[i], args.window, deadline)
                for i in range(args.pairs)
            )
        )
        elapsed = time.perf_counter() - started
        cpu_server = server.cpu_seconds() - cpu_server
        cpu_self = time.process_time() - cpu_self
        await asyncio.sleep(1)  # let the last deliveries arrive
        async with httpx.AsyncClient(base_url=server.url) as http:
            metrics = (await http.get("/metrics")).text
        batch_sum = float(re.search(r"^pigeon_commit_batch_operations_sum (\S+)", metrics, re.M)[1])
        batch_count = float(
            re.search(r"^pigeon_commit_batch_operations_count (\S+)", metrics, re.M)[1]
        )
        latencies = sorted(x for d, _ in devices for x in d.latencies)
        delivered = sum(d.received for d, _ in devices)
        for device, task in devices:
            await device.socket.close()
            task.cancel()
        sent = sum(counts)
        return {
            "database": args.database,
            "pairs": args.pairs,
            "window": args.window,
            "seconds": round(elapsed, 2),
            "sent": sent,
            "delivered": delivered,
            "messages_per_second": round(sent / elapsed),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
            "latency_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "latency_ms_max": round(latencies[-1] * 1000, 2),
            "server_cpu_percent": round(100 * cpu_server / elapsed),
            "generator_cpu_percent": round(100 * cpu_self / elapsed),
            "server_cpu_us_per_message": round(1e6 * cpu_server / sent, 1),
            "operations_per_commit": round(batch_sum / max(batch_count, 1), 1),
        }
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        if database_url:
            conn = await asyncpg.connect(POSTGRES)
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
