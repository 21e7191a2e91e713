"""What every benchmark needs: a Pigeon server in a subprocess, seeded devices, socket clients.

The server runs pinned to CPU 0 and the generator to CPU 1 (where the
machine has two), so each side's CPU use can be read apart from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect

from pigeon.bootstrap import units_of_work
from pigeon.domain import secrets
from pigeon.domain.chats import Chat, ChatKind, Member, Role, direct_key
from pigeon.domain.ids import new_id
from pigeon.domain.models import Device, Platform, User
from pigeon.storage import migrate
from pigeon.storage.engine import create_engine

POSTGRES = os.environ.get("PIGEON_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SERVER_CPU, GENERATOR_CPU = 0, 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_file_limit(wanted: int = 65536) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def pin_generator() -> None:
    if (os.cpu_count() or 1) > 1:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {GENERATOR_CPU})


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cluster_cpu_seconds() -> float:
    """CPU of every PostgreSQL process on this machine, including backends that exited.

    A backend that exits takes its CPU with it, but the postmaster collects
    it as its children's time: a pool that opens and closes connections
    shows up here (``PostgresBackends`` counts only the live ones).
    """
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, rest = (entry / "stat").read_text().split(") ", 1)
        except OSError:  # gone meanwhile
            continue
        if not name.endswith("(postgres"):
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if fields[1] == "1":  # the postmaster (its parent is init): its reaped children
            total += int(fields[13]) + int(fields[14])
    return total / tick


def process_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Database:
    """A throwaway database: a SQLite file, or a PostgreSQL database made and dropped."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.kind = kind
        self.name = f"pigeon_bench_{uuid.uuid4().hex[:8]}"
        if kind == "postgresql":
            base = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
            self.url = f"{base}/{self.name}"
        else:
            self.url = f"sqlite+aiosqlite:///{data_dir / 'pigeon.db'}"

    async def create(self) -> None:
        if self.kind == "postgresql":
            conn = await asyncpg.connect(POSTGRES)
            await conn.execute(f'CREATE DATABASE "{self.name}"')
            await conn.close()
        if other := os.environ.get("BENCH_SERVER_SRC"):  # that checkout's schema
            command = [sys.executable, "-m", "pigeon", "migrate", "--database-url", self.url]
            env = {**os.environ, "PYTHONPATH": other}
            process = await asyncio.create_subprocess_exec(*command, env=env)
            if await process.wait() != 0:
                raise RuntimeError(f"migrating with {other} failed")
            return
        engine = create_engine(self.url)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    async def drop(self) -> None:
        if self.kind == "postgresql":
            conn = await asyncpg.connect(POSTGRES)
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await conn.close()


async def wait_healthy(base_url: str) -> None:
    """Poll ``/health`` until it answers 200 (at most 20 s)."""
    async with httpx.AsyncClient() as http:
        for _ in range(400):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{base_url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{base_url} did not start")


class PigeonServer:
    """``pigeon serve`` in a subprocess on a free port, pinned to the server CPU."""

    def __init__(self, data_dir: Path, database_url: str, **settings: Any) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        env = {
            **os.environ,
            "PIGEON_DATA_DIR": str(data_dir),
            "PIGEON_PORT": str(self.port),
            "PIGEON_DATABASE_URL": database_url,
            "PIGEON_LOG_LEVEL": "WARNING",
            "PIGEON_SECRET_KEY": "bench",
        }
        env.update({f"PIGEON_{k.upper()}": str(v) for k, v in settings.items()})
        # Before/after in one sitting: BENCH_SERVER_SRC=<other checkout>/src runs
        # that checkout's server against this harness (seeding stays this one's).
        if other := os.environ.get("BENCH_SERVER_SRC"):
            env["PYTHONPATH"] = other
        self.command = [sys.executable, "-m", "pigeon", "serve"]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = list(self.command)
        if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
            command = ["taskset", "-c", str(SERVER_CPU), *command]
        self.process = subprocess.Popen(command, env=self.env, preexec_fn=raise_file_limit)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    async def wait_ready(self) -> None:
        await wait_healthy(self.url)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return process_rss_kib(self.pid)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@dataclass
class SeededUser:
    user_id: str
    devices: list[tuple[str, str]] = field(default_factory=list)  # (device id, access token)


async def seed(database_url: str, users: int, devices_per_user: int = 1) -> list[SeededUser]:
    """Users and devices written straight to the database, with known tokens.

    Registration is not what these benchmarks measure, and 10,000 devices
    through SMS codes would take minutes.
    """
    now = datetime.now(UTC)
    later = now + timedelta(days=1)
    seeded = []
    engine = create_engine(database_url)
    try:
        async with units_of_work(engine)() as uow:
            for n in range(users):
                user = User(id=new_id(), phone=f"+1415{n:07d}", created_at=now, name=f"u{n}")
                await uow.users.add(user)
                entry = SeededUser(user.id)
                for _ in range(devices_per_user):
                    token = secrets.new_token("pga")
                    device = Device(
                        id=new_id(),
                        user_id=user.id,
                        name="bench",
                        platform=Platform.CLI,
                        created_at=now,
                        last_seen_at=now,
                        access_token_hash=secrets.hash_token(token),
                        access_expires_at=later,
                        refresh_token_hash=secrets.hash_token(secrets.new_token("pgr")),
                        refresh_expires_at=later,
                    )
                    await uow.devices.add(device)
                    entry.devices.append((device.id, token))
                seeded.append(entry)
            await uow.commit()
    finally:
        await engine.dispose()
    return seeded


async def seed_chats(database_url: str, groups: Sequence[Sequence[str]], direct: bool) -> list[str]:
    """Chats with the given members (the first is the creator and admin)."""
    now = datetime.now(UTC)
    ids = []
    engine = create_engine(database_url)
    try:
        async with units_of_work(engine)() as uow:
            for members in groups:
                chat_id = new_id()
                kind = ChatKind.DIRECT if direct else ChatKind.GROUP
                key = direct_key(members[0], members[1]) if direct else None
                chat = Chat(
                    chat_id, kind, "" if direct else "bench", members[0], now, direct_key=key
                )
                roles = [Role.MEMBER if direct or i else Role.ADMIN for i in range(len(members))]
                await uow.chats.add(
                    chat, [Member(chat_id, u, r, now) for u, r in zip(members, roles, strict=True)]
                )
                ids.append(chat_id)
            await uow.commit()
    finally:
        await engine.dispose()
    return ids


class Client:
    """One device's socket: answers matched by id, message events timed and acked.

    Acks go as the SDK sends them (``pigeon.client``): cumulative, from a task
    of their own, so a burst of events read together costs one ack.
    """

    def __init__(self, socket: ClientConnection, ack: bool = True) -> None:
        self.socket = socket
        self.ack = ack
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.latencies: list[float] = []
        self.received = 0
        self.read_receipts = 0
        self.drained = asyncio.Event()
        self.ready = asyncio.Event()  # set by "ready", or when the socket ends first
        self._next = 0
        self._ack_target = 0
        self._ack_wake = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self._acker = asyncio.create_task(self._ack_loop())

    @classmethod
    async def open(cls, url: str, token: str, ack: bool = True) -> Client:
        socket = await connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            max_queue=None,
            ping_interval=None,
            open_timeout=60,
        )
        client = cls(socket, ack)
        # Open means authenticated: the server may still refuse after the upgrade.
        await asyncio.wait_for(client.ready.wait(), 120)
        if client._reader.done():
            raise ConnectionError("closed before it was ready")
        return client

    async def call(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[self._next] = future
        await self.socket.send(json.dumps({"id": self._next, "type": type_, "data": data}))
        return await future

    async def send_text(self, chat_id: str) -> dict[str, Any]:
        text = f"{time.perf_counter():.9f} " + "x" * 80  # ~100-byte messages
        answer = await self.call(
            "sendMessage",
            {"chatId": chat_id, "clientMessageId": uuid.uuid4().hex, "message": text},
        )
        if not answer.get("ok"):
            raise RuntimeError(answer)
        return answer

    async def _read(self) -> None:
        try:
            await self._read_frames()
        finally:
            self.ready.set()

    async def _read_frames(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.socket:
                frame = json.loads(raw)
                event = frame.get("event")
                if event is None:
                    future = self.answers.pop(frame.get("id"), None)
                    if future is not None:
                        future.set_result(frame)
                    continue
                data = frame["data"]
                if event == "message" and data.get("kind") == "text":
                    sent_at = float(data["message"].split(" ", 1)[0])
                    self.latencies.append(time.perf_counter() - sent_at)
                    self.received += 1
                elif event == "receipt" and data.get("type") == "read":
                    self.read_receipts += 1
                elif event == "drained":
                    self.drained.set()
                elif event == "ready":
                    self.ready.set()
                if self.ack and "inboxSeq" in data and event != "drained":
                    self._ack_target = data["inboxSeq"]
                    self._ack_wake.set()

    async def _ack_loop(self) -> None:
        acked = 0
        with contextlib.suppress(Exception):
            while True:
                await self._ack_wake.wait()
                self._ack_wake.clear()
                if self._ack_target > acked:
                    acked = self._ack_target
                    await self.socket.send(json.dumps({"type": "ack", "data": {"upTo": acked}}))

    async def close(self) -> None:
        await self.socket.close()
        self._reader.cancel()
        self._acker.cancel()


def fsync_latency_ms(seconds: float) -> dict[str, float]:
    """How long this disk takes to make an 8 KiB append durable, as a commit does.

    Every durable commit waits for one such fsync (SQLite's WAL, PostgreSQL's),
    so the disk's tail is a floor under the servers' latency tail: a stall
    here holds up every message behind it.
    """
    durations = []
    with tempfile.TemporaryDirectory(prefix="pigeon-bench-fsync-") as folder:
        fd = os.open(Path(folder) / "probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                os.write(fd, b"x" * 8192)
                started = time.perf_counter()
                os.fsync(fd)
                durations.append(time.perf_counter() - started)
                time.sleep(0.002)
        finally:
            os.close(fd)
    return {
        "p50_ms": round(percentile(durations, 0.5) * 1000, 2),
        "p99_ms": round(percentile(durations, 0.99) * 1000, 2),
        "p999_ms": round(percentile(durations, 0.999) * 1000, 2),
        "max_ms": round(max(durations) * 1000, 2),
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def latency_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2) if values else float("nan"),
    }


class Workspace:
    """A data directory and database for one scenario, removed afterwards."""

    def __init__(self, kind: str) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
        self.database = Database(kind, self.data_dir)

    async def __aenter__(self) -> Workspace:
        await self.database.create()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.database.drop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_profiler(pid: int, label: str) -> subprocess.Popen[bytes] | None:
    """py-spy on the server for the measured span, when PIGEON_BENCH_PROFILE names a folder."""
    folder = os.environ.get("PIGEON_BENCH_PROFILE")
    if not folder or not label:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    output = Path(folder) / f"{label.replace('/', '-')}.txt"
    py_spy = str(Path(sys.executable).parent / "py-spy")
    # --gil: only samples that hold the GIL, so idle worker threads do not drown the loop's.
    # --nonblocking: py-spy does not stop the server for each sample; stopping it
    # made lines with a system call look several times heavier than they are.
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100"]
    command += ["--gil", "--nonblocking", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


async def commit_counts(base_url: str) -> tuple[float, float]:
    """Group commits so far and the operations they held, from the server's /metrics."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        text = (await http.get("/metrics")).text
    found = dict(_COMMITS.findall(text))
    return float(found.get("count", 0)), float(found.get("sum", 0))


_COMMITS = re.compile(r"^pigeon_commit_batch_operations_(count|sum) (\S+)$", re.MULTILINE)


async def settle(base_urls: Sequence[str], quiet: float = 0.3, limit: float = 10.0) -> None:
    """Wait until no server has committed anything for ``quiet`` seconds (``limit`` at most).

    A span ends while its last acks and receipts are still being committed
    (up to a second after a saturated span); the next span must not pay for them.
    """
    deadline = time.perf_counter() + limit
    last = [await commit_counts(url) for url in base_urls]
    still_since = time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
        now = [await commit_counts(url) for url in base_urls]
        if now != last:
            last, still_since = now, time.perf_counter()
        elif time.perf_counter() - still_since >= quiet:
            return
