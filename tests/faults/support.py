"""What the fault tests share: the server as a process, seeded accounts, a device that recovers.

``pigeon serve`` runs as a real process (so it can be SIGKILLed); users,
devices and chats are written straight into the database with known tokens
(``bench.common``), and each device is driven by a ``Device``: a socket that
reconnects with bounded backoff, keeps a window of outstanding sends, resends
every unanswered clientMessageId after a reconnect, acks what it received and
drops what it had already seen (by messageId), as a phone app would.

Sizes: the small ones run in ``make test``; ``PIGEON_FAULTS_FULL=1`` (``make
faults``) runs the same tests at full size.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
from bench.common import SeededUser, seed, seed_chats
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pigeon.storage import migrate
from pigeon.storage.engine import create_engine
from tests.conftest import POSTGRES_URL
from tests.support import eventually, listening

FULL = os.environ.get("PIGEON_FAULTS_FULL", "") not in ("", "0")


def sized(ci: int, full: int) -> int:
    """``ci`` in ``make test``, ``full`` under ``PIGEON_FAULTS_FULL=1``."""
    return full if FULL else ci


def run_seed() -> int:
    """The RNG seed: ``PIGEON_FAULTS_SEED`` to replay a run, otherwise a fresh one."""
    given = os.environ.get("PIGEON_FAULTS_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _open_log(path: Path) -> IO[bytes]:
    return path.open("ab")


# -- the server --------------------------------------------------------------


class ServerProcess:
    """``python -m pigeon serve`` on a fixed port, started, killed and restarted by the test."""

    def __init__(self, data_dir: Path, database_url: str | None, **settings: Any) -> None:
        """``database_url`` None: the server's own default, SQLite in ``data_dir``."""
        self.data_dir = data_dir
        self.database_url = database_url
        self.settings = settings
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = data_dir / "server.log"
        self.starts = 0
        self.kills = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text("utf-8", errors="replace")

    def log_tail(self) -> str:
        return self.log_text()[-3000:]

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")}
        env.update(
            {
                "PIGEON_LOG_LEVEL": "WARNING",
                "PIGEON_SECRET_KEY": "faults",
                "PIGEON_DATA_DIR": str(self.data_dir),
                "PIGEON_PORT": str(self.port),
            }
        )
        if self.database_url is not None:
            env["PIGEON_DATABASE_URL"] = self.database_url
        env.update({f"PIGEON_{k.upper()}": str(v) for k, v in self.settings.items()})
        log = _open_log(self.log_path)
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pigeon", "serve", stdout=log, stderr=log, env=env
            )
        finally:
            log.close()
        self.starts += 1
        async with httpx.AsyncClient(base_url=self.http_url, timeout=2) as client:
            for _ in range(600):
                if self.process.returncode is not None:
                    raise AssertionError(f"the server exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise AssertionError(f"the server did not start within 30 s:\n{self.log_tail()}")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), 10)
        self.kills += 1

    async def stop(self) -> None:
        if not self.alive:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            await self.kill()


# -- databases and accounts --------------------------------------------------


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_database(engine: str, data_dir: Path) -> AsyncIterator[str]:
    """A migrated, empty database: a SQLite file in ``data_dir``, or a new PostgreSQL database
    on the shared server (``PIGEON_TEST_POSTGRES_URL``), dropped at the end."""
    if engine == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir / 'pigeon.db'}"
        await _migrate(url)
        yield url
        return
    base = make_url(POSTGRES_URL)
    name = f"pigeon_faults_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        await _migrate(url)
        yield url
    finally:
        conn = await asyncpg.connect(_dsn(POSTGRES_URL))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


async def seed_users(url: str, count: int) -> list[SeededUser]:
    """``count`` users with one device each, straight into the database."""
    return await seed(url, count)


async def seed_direct_chats(url: str, pairs: Sequence[tuple[str, str]]) -> list[str]:
    return await seed_chats(url, [list(pair) for pair in pairs], direct=True)


async def seed_group(url: str, members: Sequence[str]) -> str:
    (chat_id,) = await seed_chats(url, [list(members)], direct=False)
    return chat_id


# -- a private PostgreSQL ----------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    assert pg_ctl, "PostgreSQL server binaries (initdb, pg_ctl) are needed"
    return Path(pg_ctl).parent


class PrivatePostgres:
    """A throwaway cluster in a temporary directory, owned and run by the ``postgres`` user.

    PostgreSQL refuses to run as root, hence ``runuser`` when the tests are root.
    """

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="pigeon-faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def _run(self, tool: str, *args: str, timeout: float = 90) -> str:
        command = [str(self.bin / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        # Output to a file, not a pipe: a postmaster started by pg_ctl would inherit
        # the pipe and keep it open, and reading it to the end would never finish.
        output = self.root / f"{tool}.out"
        with output.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                *command, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, cwd=self.root
            )
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        text = output.read_text(errors="replace")
        assert process.returncode == 0, f"{tool} {args} failed:\n{text}\n{self.log_tail()}"
        return text

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "postgres.log").read_text(errors="replace")[-2000:]
        return ""

    async def start(self) -> None:
        await self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        await self.start_again()

    async def start_again(self) -> None:
        # Always with these options: never on the default port, where the shared server is.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        await self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    async def crash(self) -> None:
        """Stop it the way a crash would: no checkpoint, every connection cut."""
        await self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    async def restart_immediately(self) -> None:
        """Crash it (no checkpoint, connections cut) and start it again: crash recovery."""
        await self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"),
            "-m", "immediate", "-w", "-t", "60", "restart",
        )  # fmt: skip

    async def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                await self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    async def fetch(self, query: str, *args: Any, database: str = "postgres") -> list[Any]:
        """The rows of one query, on a connection of its own."""
        conn = await asyncpg.connect(self.dsn(database))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def create_database(self, name: str) -> None:
        await self.fetch(f'CREATE DATABASE "{name}"')

    async def configure(self, **settings: str) -> None:
        """``ALTER SYSTEM SET`` each setting, then reload the configuration."""
        for name, value in settings.items():
            await self.fetch(f"ALTER SYSTEM SET {name} = '{value}'")
        await self.fetch("SELECT pg_reload_conf()")

    async def wait_until(self, query: str, *args: Any, timeout: float = 30) -> None:
        """Poll ``query`` (one boolean) until it is true."""
        deadline = time.monotonic() + timeout
        while not (await self.fetch(query, *args))[0][0]:
            assert time.monotonic() < deadline, (
                f"not within {timeout} s: {query}\n{self.log_tail()}"
            )
            await asyncio.sleep(0.05)

    # -- streaming replication ---------------------------------------------------

    async def start_as_replica_of(self, primary: PrivatePostgres, application_name: str) -> None:
        """A streaming replica: a base backup of ``primary`` (``pg_basebackup -R``, which
        writes ``primary_conninfo`` with ``application_name``, the name the primary's
        ``synchronous_standby_names`` refers to), started in hot standby."""
        source = (
            f"host=127.0.0.1 port={primary.port} user=postgres application_name={application_name}"
        )
        await self._run(
            "pg_basebackup", "-D", str(self.data), "-d", source, "-R", "-X", "stream",
            "-c", "fast", "--no-sync",
        )  # fmt: skip
        await self.start_again()

    async def replicate_to(self, application_name: str, *, synchronous: bool) -> None:
        """On the primary: wait until the standby ``application_name`` streams. Synchronous:
        a commit then waits until that standby has flushed it (``synchronous_standby_names``
        naming it, ``synchronous_commit=on``); otherwise the standby follows when it can."""
        if synchronous:
            await self.configure(synchronous_standby_names=application_name)
            assert (await self.fetch("SHOW synchronous_commit"))[0][0] == "on"
        await self.wait_until(
            "SELECT EXISTS (SELECT FROM pg_stat_replication"
            " WHERE application_name = $1 AND sync_state = $2)",
            application_name,
            "sync" if synchronous else "async",
        )

    async def promote(self) -> None:
        """A standby becomes a primary (``pg_ctl promote``), once it accepts writes."""
        await self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")


def multi_host_url(
    clusters: Sequence[PrivatePostgres],
    database: str,
    target_session_attrs: str | None = "read-write",
) -> str:
    """One URL naming every cluster, in order (the form docs/operations.md documents)."""
    hosts = "&".join(f"host=127.0.0.1:{cluster.port}" for cluster in clusters)
    url = f"postgresql+asyncpg://postgres@/{database}?{hosts}"
    return (
        url
        if target_session_attrs is None
        else f"{url}&target_session_attrs={target_session_attrs}"
    )


class HealthWatch:
    """Polls ``/health`` and an authenticated route (``/v1/me``) every 100 ms.

    Keeps (monotonic time, /health status or None) and counts /v1/me statuses.
    """

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self.samples: list[tuple[float, int | None]] = []
        self.me: Counter[int | None] = Counter()

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=3) as http:
            while True:
                status: int | None = None
                with contextlib.suppress(httpx.HTTPError):
                    status = (await http.get("/health")).status_code
                self.samples.append((time.monotonic(), status))
                me: int | None = None
                with contextlib.suppress(httpx.HTTPError):
                    me = (await http.get("/v1/me", headers=headers)).status_code
                self.me[me] += 1
                await asyncio.sleep(0.1)


# Failures nobody handled: in a request or socket, a command, a commit, a stray task.
# (The background tasks log their failed rounds with a traceback too, by design: a
# round that falls into an outage is expected and only counted.)
UNHANDLED_MARKERS = (
    "Exception in ASGI application",
    "request.failed",
    "gateway.command_failed",
    "commit.failed ",
    "Task exception was never retrieved",
)


def unhandled_failures(log: str) -> int:
    return sum(log.count(marker) for marker in UNHANDLED_MARKERS)


# -- several nodes and their bus ------------------------------------------------


class BusServer:
    """A private ``redis-server`` or ``nats-server`` on a free port, killed and started again
    by the test (the machine's shared Redis and NATS are never touched)."""

    BINARIES = {"redis": "/usr/bin/redis-server", "nats": "/usr/sbin/nats-server"}

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.kills = 0

    @property
    def url(self) -> str:
        if self.kind == "redis":
            return f"redis://127.0.0.1:{self.port}/0"
        return f"nats://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        binary = self.BINARIES[self.kind]
        if self.kind == "redis":
            # Nothing written to disk: a restarted Redis is an empty one, the worst case.
            return [
                binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.root),
            ]  # fmt: skip
        return [binary, "-a", "127.0.0.1", "-p", str(self.port)]

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = _open_log(self.root / f"{self.kind}.log")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self._command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        await eventually(self._listening, timeout=10, interval=0.02)

    async def _listening(self) -> bool:
        assert self.process is not None
        assert self.process.returncode is None, f"{self.kind} exited"
        return await listening(self.port)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), 10)
        self.kills += 1

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.kill()


class NodeChoice:
    """A device's way to the nodes, as a load balancer without health checks gives it:
    its home node first, and after every drop or refused attempt the next one round."""

    def __init__(self, nodes: Sequence[ServerProcess], home: int) -> None:
        self.nodes = list(nodes)
        self._next = home
        self.last: ServerProcess | None = None

    def __call__(self) -> str:
        self.last = self.nodes[self._next % len(self.nodes)]
        self._next += 1
        return self.last.ws_url


class LoadBalancer:
    """A TCP load balancer in front of the nodes (round robin; a node that refuses the
    connection is skipped), as HAProxy or nginx would be: the SDK knows one address."""

    def __init__(self, nodes: Sequence[ServerProcess]) -> None:
        self.nodes = list(nodes)
        self.port = free_port()
        self._turn = itertools.count()
        self._connections: Counter[int] = Counter()  # node port -> connections passed on
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def connections_to(self, node: ServerProcess) -> int:
        return self._connections[node.port]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = next(self._turn)
        for offset in range(len(self.nodes)):
            node = self.nodes[(start + offset) % len(self.nodes)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", node.port)
            except OSError:
                continue
            self._connections[node.port] += 1
            pipes = [
                asyncio.create_task(_pipe(reader, up_writer)),
                asyncio.create_task(_pipe(up_reader, writer)),
            ]
            self._pipes.update(pipes)
            try:
                await asyncio.gather(*pipes, return_exceptions=True)
            finally:
                self._pipes.difference_update(pipes)
            return
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


# -- a device ----------------------------------------------------------------

RETRYABLE = {"unavailable"}  # error answers a send is tried again after


@dataclass(slots=True)
class Outgoing:
    chat_id: str
    client_message_id: str
    text: str


class Registry:
    """What all devices of one test share: when each clientMessageId was first sent."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}


class Device:
    """One seeded device, driven like a phone app that survives a flaky server.

    Sends: at most ``window`` outstanding; every answer recorded
    (clientMessageId -> messageId/seq); on a lost connection every send
    without an answer is queued again in front and resent with the same
    clientMessageId; an error answer (``unavailable``) is resent after a pause.
    Receives: every queued event acked (cumulatively); messages dropped if
    their messageId was already seen; the rest are what the app shows.
    """

    def __init__(
        self,
        name: str,
        user: SeededUser,
        ws_url: Callable[[], str],
        registry: Registry,
        *,
        window: int = 8,
        reconnect_deadline: float = 60.0,
        rng_seed: int = 0,
    ) -> None:
        self.name = name
        self.user_id = user.user_id
        self.device_id, self.token = user.devices[0]
        self._ws_url = ws_url
        self._registry = registry
        self.window = window
        self.reconnect_deadline = reconnect_deadline
        self._rng = random.Random(rng_seed)
        # sending
        self.queue: deque[Outgoing] = deque()
        self.answers: dict[str, dict[str, Any]] = {}
        self.conflicts: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.errors: Counter[str] = Counter()
        self.rejected: dict[str, str] = {}  # clientMessageId -> error code that is no retry
        self.resends = 0
        self.answered_at: list[float] = []  # monotonic time of every successful answer
        self._attempted: set[str] = set()
        self._outstanding: dict[int, Outgoing] = {}
        self._retry_at = 0.0
        self._retries = 0
        self._wake = asyncio.Event()
        # receiving
        self.seen: dict[str, dict[str, Any]] = {}  # messageId -> first message event data
        self.shown: defaultdict[str, list[int]] = defaultdict(list)  # chatId -> seqs shown
        self.ids_per_cmid: defaultdict[str, set[str]] = defaultdict(set)
        self.redelivered = 0
        self.latencies: list[float] = []
        self.last_received_at = 0.0
        self.received_at: list[float] = []  # monotonic time of every message first shown
        self.arrived: dict[str, float] = {}  # clientMessageId -> perf_counter when first shown
        self._last_inbox = 0
        self._acked = 0
        self._ack_wake = asyncio.Event()
        # the connection
        self.connections = 0
        self.connect_failures = 0
        self.close_codes: Counter[int | None] = Counter()
        self._socket: ClientConnection | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.online = asyncio.Event()

    # -- what the test drives ---------------------------------------------------

    @property
    def registry(self) -> Registry:
        return self._registry

    def add(self, items: Iterable[Outgoing]) -> None:
        self.queue.extend(items)
        self._wake.set()

    @property
    def done_sending(self) -> bool:
        return not self.queue and not self._outstanding

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"device-{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._socket.close(), 3)
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    def check(self) -> None:
        """Raise what the device's task died of, if it died."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None:
                raise exc

    # -- the connection ---------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        down_since = time.monotonic()
        while not self._stopping.is_set():
            try:
                socket_ = await connect(
                    self._ws_url(),
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=5,
                    close_timeout=2,
                    ping_interval=None,
                    compression=None,
                    max_queue=None,
                )
            except Exception:  # refused, reset, timed out, 5xx: the server is away
                failures += 1
                self.connect_failures += 1
                if time.monotonic() - down_since > self.reconnect_deadline:
                    raise AssertionError(
                        f"{self.name} could not reconnect within {self.reconnect_deadline} s"
                    ) from None
                backoff = min(0.05 * 2 ** min(failures, 5), 1.0)
                await asyncio.sleep(backoff * (0.5 + self._rng.random() / 2))
                continue
            if self._stopping.is_set():  # stopped while connecting
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(socket_.close(), 2)
                return
            failures = 0
            self.connections += 1
            self._socket = socket_
            try:
                await self._session(socket_)
            finally:
                self.online.clear()
                self._socket = None
                self.close_codes[socket_.close_code] += 1
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(socket_.close(), 2)
                # Every send still without an answer goes again, first, same clientMessageId.
                for rid in sorted(self._outstanding, reverse=True):
                    self.queue.appendleft(self._outstanding[rid])
                self._outstanding.clear()
                down_since = time.monotonic()

    async def _session(self, socket_: ClientConnection) -> None:
        self._last_inbox = 0
        self._acked = 0
        rids = itertools.count(1)
        tasks = [
            asyncio.create_task(self._send_loop(socket_, rids)),
            asyncio.create_task(self._ack_loop(socket_)),
        ]
        try:
            async for raw in socket_:
                self._on_frame(json.loads(raw))
                if any(task.done() for task in tasks):
                    break
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, ConnectionClosed | asyncio.CancelledError
            ):
                raise outcome

    async def _send_loop(self, socket_: ClientConnection, rids: Iterable[int]) -> None:
        ids = iter(rids)
        while True:
            while self.queue and len(self._outstanding) < self.window:
                pause = self._retry_at - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                    continue
                item = self.queue.popleft()
                rid = next(ids)
                self._outstanding[rid] = item
                if item.client_message_id in self._attempted:
                    self.resends += 1
                else:
                    self._attempted.add(item.client_message_id)
                    self._registry.sent_at.setdefault(item.client_message_id, time.perf_counter())
                data = {
                    "chatId": item.chat_id,
                    "clientMessageId": item.client_message_id,
                    "message": item.text,
                }
                await socket_.send(json.dumps({"id": rid, "type": "sendMessage", "data": data}))
            self._wake.clear()
            await self._wake.wait()

    async def _ack_loop(self, socket_: ClientConnection) -> None:
        while True:
            self._ack_wake.clear()
            if self._last_inbox > self._acked:
                up_to = self._last_inbox
                await socket_.send(json.dumps({"type": "ack", "data": {"upTo": up_to}}))
                self._acked = up_to
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ack_wake.wait(), 0.05)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        event = frame.get("event")
        if event is None:
            self._on_answer(frame)
            return
        data = frame["data"]
        if event == "ready":
            self.online.set()
        elif event == "message":
            self._on_message(data)
        if "inboxSeq" in data and event != "drained":
            self._last_inbox = data["inboxSeq"]
            if self._last_inbox - self._acked >= 32:
                self._ack_wake.set()

    def _on_answer(self, frame: dict[str, Any]) -> None:
        item = self._outstanding.pop(frame.get("id"), None)
        if not frame.get("ok"):
            code = frame.get("error", {}).get("code", "?")
            self.errors[code] += 1
            if item is not None and code not in RETRYABLE:
                self.rejected[item.client_message_id] = code
                self._wake.set()
            elif item is not None:
                # Try again shortly with the same clientMessageId (a retryable error).
                self._retries += 1
                self._retry_at = time.monotonic() + min(0.02 * 2 ** min(self._retries, 5), 0.5)
                self.queue.appendleft(item)
                self._wake.set()
            return
        if item is None:
            return  # an ack with an id, for instance
        self._retries = 0
        answer = frame["data"]
        earlier = self.answers.setdefault(item.client_message_id, answer)
        if (earlier["messageId"], earlier["seq"]) != (answer["messageId"], answer["seq"]):
            self.conflicts.append((item.client_message_id, earlier, answer))
        self.answered_at.append(time.monotonic())
        self._wake.set()

    def _on_message(self, data: dict[str, Any]) -> None:
        message_id = data["messageId"]
        if message_id in self.seen:
            self.redelivered += 1
            return
        self.seen[message_id] = data
        self.shown[data["chatId"]].append(data["seq"])
        cmid = data["message"].split(" ", 1)[0]
        self.ids_per_cmid[cmid].add(message_id)
        self.last_received_at = time.monotonic()
        self.received_at.append(self.last_received_at)
        self.arrived[cmid] = now = time.perf_counter()
        sent_at = self._registry.sent_at.get(cmid)
        if sent_at is not None:
            self.latencies.append(now - sent_at)


# -- running a fleet of devices and judging the outcome ----------------------


@dataclass
class Figures:
    sent: int = 0
    acked: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivered: int = 0
    order_breaks: int = 0
    seq_mismatches: int = 0
    seq_clashes: int = 0
    conflicts: int = 0
    rejected: int = 0
    resends: int = 0
    answered_as_duplicate: int = 0  # committed before a kill, answered only after the resend
    errors: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        errors = ",".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "0"
        return (
            f"sent={self.sent} acked={self.acked} lost={self.lost} "
            f"duplicated={self.duplicated} redelivered={self.redelivered} "
            f"order_breaks={self.order_breaks} seq_mismatches={self.seq_mismatches} "
            f"seq_clashes={self.seq_clashes} answer_conflicts={self.conflicts} "
            f"rejected={self.rejected} "
            f"resends={self.resends} answered_as_duplicate={self.answered_as_duplicate} "
            f"error_answers={errors} connections={self.connections}"
        )

    def assert_zeros(self) -> None:
        zeros = {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "order_breaks": self.order_breaks,
            "seq_mismatches": self.seq_mismatches,
            "seq_clashes": self.seq_clashes,
            "answer_conflicts": self.conflicts,
            "rejected": self.rejected,
        }
        assert all(v == 0 for v in zeros.values()), (zeros, self.details[:20])
        assert self.acked == self.sent, (self.acked, self.sent)


class Fleet:
    """Devices and the chats they are in; knows what each device should end up showing."""

    def __init__(self, devices: Sequence[Device], members: dict[str, Sequence[Device]]) -> None:
        self.devices = list(devices)
        self.members = {chat_id: set(group) for chat_id, group in members.items()}
        self.chat_of: dict[str, str] = {}  # clientMessageId (unique in a test) -> chatId
        self._wanted: dict[str, dict[str, int]] = {}

    @property
    def sent(self) -> int:
        return len(self.chat_of)

    def send(self, device: Device, items: Sequence[Outgoing]) -> None:
        for item in items:
            assert item.client_message_id not in self.chat_of
            assert device in self.members[item.chat_id]
            self.chat_of[item.client_message_id] = item.chat_id
        device.add(items)

    def start(self) -> None:
        for device in self.devices:
            device.start()

    async def stop(self) -> None:
        await asyncio.gather(*(device.stop() for device in self.devices), return_exceptions=True)

    def answered(self) -> int:
        return sum(len(device.answers) for device in self.devices)

    def arrived_since(self, moment: float) -> int:
        """Messages sent after ``moment`` (perf_counter) that some device has shown."""
        sent_at = self.devices[0].registry.sent_at
        return sum(1 for d in self.devices for cmid in d.arrived if sent_at.get(cmid, 0.0) > moment)

    def all_answered(self) -> bool:
        """Every send answered (or refused for good, which the figures count)."""
        return self.answered() + sum(len(d.rejected) for d in self.devices) >= self.sent

    def check(self) -> None:
        for device in self.devices:
            device.check()

    async def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.check()
            if time.monotonic() > deadline:
                state = self.state()
                raise AssertionError(f"timed out after {timeout} s waiting for {what}: {state}")
            await asyncio.sleep(0.02)

    def state(self) -> str:
        """Where the fleet stands, for a timeout's message: answers, who is offline, what
        each device still misses (once frozen)."""
        offline = [d.name for d in self.devices if not d.online.is_set()]
        missing = {
            d.name: sorted(self._wanted[d.name].keys() - d.seen.keys())[:3]
            for d in self.devices
            if self._wanted and self._wanted[d.name].keys() - d.seen.keys()
        }
        return f"answered {self.answered()}/{self.sent}, offline {offline}, missing {missing}"

    def freeze(self) -> None:
        """Once every send is answered: what each device must receive (messageId -> seq)."""
        self._wanted = {device.name: {} for device in self.devices}
        for sender in self.devices:
            for cmid, answer in sender.answers.items():
                for member in self.members[self.chat_of[cmid]]:
                    if member is not sender:
                        self._wanted[member.name][answer["messageId"]] = answer["seq"]

    def everything_delivered(self) -> bool:
        return all(
            self._wanted[device.name].keys() <= device.seen.keys() for device in self.devices
        )

    def missing(self) -> int:
        return sum(
            len(self._wanted[device.name].keys() - device.seen.keys()) for device in self.devices
        )

    def figures(self) -> Figures:
        result = Figures(sent=self.sent, acked=self.answered())
        answered_seqs: defaultdict[str, list[int]] = defaultdict(list)
        for device in self.devices:
            for cmid, answer in device.answers.items():
                answered_seqs[self.chat_of[cmid]].append(answer["seq"])
            result.conflicts += len(device.conflicts)
            result.rejected += len(device.rejected)
            if device.rejected:
                result.details.append(f"{device.name} refused {dict(device.rejected)}")
            result.resends += device.resends
            result.answered_as_duplicate += sum(a["duplicate"] for a in device.answers.values())
            result.errors += device.errors
            result.redelivered += device.redelivered
            result.connections += device.connections
            wanted = self._wanted[device.name]
            missing = set(wanted) - device.seen.keys()
            result.lost += len(missing)
            if missing:
                result.details.append(f"{device.name} lost {sorted(missing)[:5]}")
            for message_id, seq in wanted.items():
                got = device.seen.get(message_id)
                if got is not None and got["seq"] != seq:
                    result.seq_mismatches += 1
                    result.details.append(f"{device.name} {message_id} seq {got['seq']} != {seq}")
            for cmid, ids in device.ids_per_cmid.items():
                if len(ids) > 1:
                    result.duplicated += len(ids) - 1
                    result.details.append(f"{device.name} shown {cmid} {len(ids)} times")
            for chat_id, seqs in device.shown.items():
                breaks = sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
                result.order_breaks += breaks
                if breaks:
                    result.details.append(f"{device.name} chat {chat_id} order {seqs[:50]}")
        for chat_id, seqs in answered_seqs.items():
            clashes = len(seqs) - len(set(seqs))
            result.seq_clashes += clashes
            if clashes:
                result.details.append(f"chat {chat_id}: {clashes} seqs answered twice")
        return result


# -- the usual load -----------------------------------------------------------


async def direct_chat_fleet(
    url: str, server: ServerProcess, chats: int, *, window: int, extra_users: int = 0
) -> tuple[Fleet, list[str], list[SeededUser]]:
    """``chats`` 1:1 chats, chat i between devices 2i and 2i+1 (seeded, with a ``Device``
    each), and ``extra_users`` more seeded users the test drives itself."""
    users = await seed_users(url, 2 * chats + extra_users)
    extras = users[2 * chats :]
    chat_ids = await seed_direct_chats(
        url, [(users[2 * i].user_id, users[2 * i + 1].user_id) for i in range(chats)]
    )
    registry = Registry()
    devices = [
        Device(f"d{i}", user, lambda: server.ws_url, registry, window=window, rng_seed=i)
        for i, user in enumerate(users[: 2 * chats])
    ]
    members: dict[str, Sequence[Device]] = {
        chat: devices[2 * i : 2 * i + 2] for i, chat in enumerate(chat_ids)
    }
    return Fleet(devices, members), chat_ids, extras


async def steady_load(
    fleet: Fleet, chats: Sequence[str], rate: float, total: int, prefix: str
) -> None:
    """Message n is due at n / rate seconds, in chat n % len(chats), whose two devices
    (as ``direct_chat_fleet`` made them) take turns."""
    begin = time.monotonic()
    for n in range(total):
        due = begin + n / rate
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        chat = n % len(chats)
        sender = fleet.devices[2 * chat + (n // len(chats)) % 2]
        cmid = f"{prefix}{n:06d}"
        fleet.send(sender, [Outgoing(chats[chat], cmid, f"{cmid} steady load")])


async def wind_down(fleet: Fleet, server: ServerProcess, *tasks: asyncio.Task[Any]) -> bool:
    """Cancel the test's own tasks, stop the devices, then the server. Whether the server
    was still running (had not died by itself)."""
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    try:
        await fleet.stop()
    finally:
        alive = server.alive
        await server.stop()
    return alive


async def cross_node_fleet(
    url: str, nodes: Sequence[ServerProcess], chats: int, *, window: int, seed: int = 0
) -> tuple[Fleet, list[str], list[NodeChoice]]:
    """``chats`` 1:1 chats as ``direct_chat_fleet`` makes them, device i starting on node
    i % len(nodes) (so with two nodes every chat crosses the bus), moving on after a drop."""
    users = await seed_users(url, 2 * chats)
    chat_ids = await seed_direct_chats(
        url, [(users[2 * i].user_id, users[2 * i + 1].user_id) for i in range(chats)]
    )
    registry = Registry()
    choices = [NodeChoice(nodes, home=i % len(nodes)) for i in range(len(users))]
    devices = [
        Device(f"d{i}", user, choices[i], registry, window=window, rng_seed=seed + i)
        for i, user in enumerate(users)
    ]
    members: dict[str, Sequence[Device]] = {
        chat: devices[2 * i : 2 * i + 2] for i, chat in enumerate(chat_ids)
    }
    return Fleet(devices, members), chat_ids, choices
