"""The session file of ``pigeon chat``, its local store, and running a command with them.

The session file (``~/.config/pigeon/session.json`` by default) holds the
server's URL and the device's tokens. Next to it, ``<stem>-<device id>.sqlite3``
is the device's local store (``pigeon.client.LocalStore``): every message,
receipt and system message received, kept before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pigeon.cli.chat_errors import explain
from pigeon.cli.terminal import fail
from pigeon.client import (
    AuthenticationError,
    Connection,
    LocalStore,
    PigeonClient,
    PigeonError,
    ReconnectPolicy,
    Session,
)

T = TypeVar("T")

# A terminal session gives up sooner than a long-running application would.
CLI_RECONNECT = ReconnectPolicy(initial_delay=0.5, max_delay=5.0, max_attempts=5)


def default_session_file() -> Path:
    return Path.home() / ".config" / "pigeon" / "session.json"


SessionFile = Annotated[
    Path | None,
    typer.Option(
        "--session-file",
        help="Where the session is kept (default: ~/.config/pigeon/session.json).",
        envvar="PIGEON_SESSION_FILE",
        show_envvar=True,
    ),
]


@dataclass(frozen=True, slots=True)
class SavedSession:
    """What the session file holds: the server, the device's session, the number."""

    path: Path
    server: str
    session: Session
    phone: str | None

    @property
    def store_path(self) -> Path:
        return store_path(self.path, self.session.device_id)

    def saved_again(self, session: Session) -> SavedSession:
        """The same file with rotated tokens (written at once)."""
        save_session(self.path, self.server, session, self.phone)
        return SavedSession(self.path, self.server, session, self.phone)


def store_path(session_file: Path, device_id: str) -> Path:
    """The device's local store: next to its session file, one file per device session."""
    return session_file.with_name(f"{session_file.stem}-{device_id}.sqlite3")


def save_session(path: Path, server: str, session: Session, phone: str | None = None) -> None:
    """Write the session atomically, readable and writable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    record: dict[str, Any] = {"server": server, **session.to_dict()}
    if phone is not None:
        record["phone"] = phone
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
        file.write("\n")
    os.chmod(temporary, 0o600)  # in case it existed with a wider mode
    os.replace(temporary, path)


def load_session(path: Path | None) -> SavedSession:
    path = path or default_session_file()
    try:
        record = json.loads(path.read_text("utf-8"))
        phone = record.get("phone")
        return SavedSession(path, str(record["server"]), Session.from_dict(record), phone)
    except FileNotFoundError:
        fail(f"Not logged in (no {path}). Run: pigeon chat login --server URL --phone NUMBER")
    except (ValueError, KeyError, TypeError, AttributeError):
        fail(f"{path} is not a Pigeon session file. Log in again: pigeon chat login ...")
    except OSError as exc:
        fail(f"Cannot read {path}: {exc.strerror or exc}.")


def forget(saved: SavedSession) -> None:
    """Delete the session file and the device's local store (its history goes with it)."""
    store = saved.store_path
    for file in (store, store.with_name(f"{store.name}-wal"), store.with_name(f"{store.name}-shm")):
        file.unlink(missing_ok=True)
    saved.path.unlink(missing_ok=True)


def run(coroutine: Coroutine[Any, Any, T], saved: SavedSession | None = None) -> T:
    """Run a command's coroutine; every failure becomes one line and exit status 1."""
    try:
        return asyncio.run(coroutine)
    except PigeonError as exc:
        fail(explain(exc, saved))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}.")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def with_client(path: Path | None, action: Callable[[PigeonClient, Session], Awaitable[T]]) -> T:
    """Run an HTTP-only action (no WebSocket, so a running ``open`` is not replaced).

    An access token the server refuses is refreshed once and stored.
    """
    saved = load_session(path)

    async def attempt() -> T:
        async with PigeonClient(saved.server) as client:
            try:
                return await action(client, saved.session)
            except AuthenticationError as exc:
                if exc.code != "invalid_token":
                    raise
            fresh = await client.refresh(saved.session)
            saved.saved_again(fresh)
            return await action(client, fresh)

    return run(attempt(), saved)


def with_connection(
    path: Path | None,
    action: Callable[[Connection, PigeonClient, LocalStore], Awaitable[T]],
) -> T:
    """Run ``action`` on a live connection that keeps what it receives in the local store."""
    saved = load_session(path)
    return run(connected(saved, action), saved)


async def connected(
    saved: SavedSession,
    action: Callable[[Connection, PigeonClient, LocalStore], Awaitable[T]],
) -> T:
    """``action`` with the device's client, store and connection open (closed after)."""
    current = saved

    def rotated(session: Session) -> None:
        nonlocal current
        current = current.saved_again(session)

    async with (
        PigeonClient(saved.server) as client,
        LocalStore(saved.store_path) as store,
        client.connect(
            current.session, on_session=rotated, reconnect=CLI_RECONNECT, store=store
        ) as conn,
    ):
        return await action(conn, client, store)
