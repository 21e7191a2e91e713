"""The real thing: ``pigeon serve`` as a process, spoken to over HTTP on 127.0.0.1.

Like ``make run``: the server starts on an empty data directory (or an empty
PostgreSQL database), migrates it, serves the API, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL

PHONE = "+14155550123"
START_TIMEOUT = 60.0  # a bound, not a measure: a loaded machine starts slowly
STOP_TIMEOUT = 15.0
PIGEON = Path(sys.executable).parent / "pigeon"  # the console script `make run` uses


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log = log

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace")

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, f"server exited early:\n{self.output()}"
                try:
                    if client.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"no healthy server after {START_TIMEOUT} s:\n{self.output()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running {STOP_TIMEOUT} s after SIGTERM:\n{self.output()}"
            ) from None


@contextmanager
def pigeon_serve(
    data_dir: Path, database_url: str | None = None, env: dict[str, str] | None = None
) -> Iterator[Server]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")}
    environment |= env or {}
    if database_url is not None:
        environment["PIGEON_DATABASE_URL"] = database_url
    log = data_dir.parent / f"{data_dir.name}-server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(PIGEON), "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Server(process, f"http://127.0.0.1:{port}", log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def register_and_read_me(server: Server, data_dir: Path) -> None:
    """What a developer does after `make run`: get a code, read it from the outbox, log in."""
    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        response = client.post("/v1/auth/code", json={"phone": PHONE})
        assert response.status_code == 202, response.text
        [line] = (data_dir / "sms-outbox.jsonl").read_text("utf-8").splitlines()
        sms = json.loads(line)
        assert (sms["to"], sms["template"]) == (PHONE, "verification_code")
        match = re.search(r"\b(\d{6})\b", sms["body"])
        assert match is not None, sms

        response = client.post(
            "/v1/auth/verify",
            json={"phone": PHONE, "code": match.group(1), "device": {"name": "curl"}},
        )
        assert response.status_code == 200, response.text
        session = response.json()
        assert session["newUser"] is True

        me = client.get("/v1/me", headers={"Authorization": f"Bearer {session['accessToken']}"})
        assert me.status_code == 200, me.text
        assert me.json()["id"] == session["userId"]
        assert me.json()["phone"] == PHONE


def test_serve_on_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"  # does not exist yet
    with pigeon_serve(data_dir) as server:
        server.wait_until_healthy()
        register_and_read_me(server, data_dir)

        database = data_dir / "pigeon.db"
        assert database.is_file()
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            [(phone,)] = conn.execute("SELECT phone FROM users").fetchall()
        assert {"alembic_version", "users", "devices", "verification_codes"} <= tables
        assert phone == PHONE

        assert server.stop() == 0, server.output()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A new PostgreSQL database with nothing in it, not even migrations."""
    name = f"pigeon_serve_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _postgres_tables_and_phones(url: str) -> tuple[set[str], list[str]]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        phones = await conn.fetch("SELECT phone FROM users")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}, [row["phone"] for row in phones]


def test_serve_migrates_an_empty_postgres_database(tmp_path: Path, empty_postgres_url: str) -> None:
    data_dir = tmp_path / "var"
    with pigeon_serve(data_dir, database_url=empty_postgres_url) as server:
        server.wait_until_healthy()
        register_and_read_me(server, data_dir)

        tables, phones = asyncio.run(_postgres_tables_and_phones(empty_postgres_url))
        assert {"alembic_version", "users", "devices", "verification_codes"} <= tables
        assert phones == [PHONE]
        assert not (data_dir / "pigeon.db").exists()

        assert server.stop() == 0, server.output()


def test_serve_says_where_it_listens_and_when_it_stopped(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    with pigeon_serve(data_dir) as server:
        server.wait_until_healthy()
        [listening] = [line for line in server.output().splitlines() if "pigeon.listening" in line]
        assert f"url={server.base_url}" in listening
        assert f"docs={server.base_url}/docs" in listening
        assert f"web={server.base_url}/" in listening  # the web client, to open in a browser
        assert "pigeon.stopped" not in server.output()

        assert server.stop() == 0, server.output()
        assert server.output().splitlines()[-1].endswith("pigeon.stopped")


def _serve_on(port: int, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``pigeon serve`` on ``port``, expected to stop by itself."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")}
    return subprocess.run(
        [str(PIGEON), "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


def test_serve_refuses_a_port_something_else_listens_on(tmp_path: Path) -> None:
    """Pigeon listens on several sockets of one port (SO_REUSEPORT), but never joins
    sockets another program, or another Pigeon, has there: it says so and exits."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        done = _serve_on(holder.getsockname()[1], tmp_path / "beside-a-socket")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pigeon.cannot_listen" in done.stdout + done.stderr
    assert "Address already in use" in done.stdout + done.stderr

    with pigeon_serve(tmp_path / "first") as first:
        first.wait_until_healthy()
        done = _serve_on(int(first.base_url.rsplit(":", 1)[1]), tmp_path / "second")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Address already in use" in done.stdout + done.stderr
        assert not (tmp_path / "second" / "pigeon.db").exists()
        assert first.stop() == 0, first.output()


def test_the_listening_sockets_share_one_port_and_each_accepts() -> None:
    import uvicorn

    from pigeon.cli.serving import listening_sockets

    sockets = listening_sockets(uvicorn.Config(app=None, host="127.0.0.1", port=0), 3)
    try:
        [port] = {sock.getsockname()[1] for sock in sockets}
        for sock in sockets:
            sock.listen(128)
            sock.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(60)]
        accepted = [0] * len(sockets)
        for index, sock in enumerate(sockets):
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted[index] += 1
        for client in clients:
            client.close()
        # The kernel spreads connections by their addresses: 60 over 3 leave none
        # empty but with odds of about 1 in 10^10.
        assert sum(accepted) == 60
        assert min(accepted) > 0, accepted
    finally:
        for sock in sockets:
            sock.close()
