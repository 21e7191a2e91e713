"""``pigeon chat``: a terminal client built on the ``pigeon.client`` SDK.

``login`` registers this terminal as a device and keeps the session in a file
readable only by its owner; the other commands use that session. A device has
one live connection at a time: running a command while ``open`` runs with
the same session file replaces the ``open`` connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from pigeon.client import (
    ApiError,
    ChatDetails,
    CommandError,
    Connection,
    DrainedEvent,
    MessageEvent,
    PigeonClient,
    PigeonError,
    PresenceEvent,
    ReceiptEvent,
    ReconnectPolicy,
    RequestTimeout,
    SentMessage,
    Session,
    TypingEvent,
)

chat = typer.Typer(
    help="Chat from the terminal: log in, list and open chats, send messages.",
    no_args_is_help=True,
)
console = Console()
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


# -- the session file --------------------------------------------------------------


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


def load_session(path: Path) -> tuple[str, Session, dict[str, Any]]:
    try:
        record = json.loads(path.read_text("utf-8"))
        return str(record["server"]), Session.from_dict(record), record
    except FileNotFoundError:
        _fail(f"Not logged in (no {path}). Run: pigeon chat login --server URL --phone NUMBER")
    except (ValueError, KeyError, TypeError):
        _fail(f"{path} is not a Pigeon session file. Log in again.")


def _fail(message: str) -> NoReturn:
    console.print(f"[red]{message}[/red]", highlight=False)
    raise typer.Exit(1)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the command's coroutine; SDK errors become a message and exit status 1."""
    try:
        return asyncio.run(coroutine)
    except PigeonError as exc:
        _fail(f"{type(exc).__name__}: {exc.code}: {exc.message}")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _with_connection(path: Path, action: Callable[[Connection, PigeonClient], Awaitable[T]]) -> T:
    server, session, record = load_session(path)

    def store(new: Session) -> None:
        save_session(path, server, new, record.get("phone"))

    async def run() -> T:
        async with (
            PigeonClient(server) as client,
            client.connect(session, on_session=store, reconnect=CLI_RECONNECT) as conn,
        ):
            return await action(conn, client)

    return _run(run())


# -- commands ----------------------------------------------------------------------


@chat.command()
def login(
    server: Annotated[
        str, typer.Option(help="The server's URL.", envvar="PIGEON_SERVER", show_envvar=True)
    ],
    phone: Annotated[str, typer.Option(help="Your number, with the leading +.")],
    device_name: Annotated[
        str | None, typer.Option(help="How this device is listed (default: pigeon-cli@HOSTNAME).")
    ] = None,
    session_file: SessionFile = None,
) -> None:
    """Register this terminal: a code is texted to PHONE, then asked for here."""
    path = session_file or default_session_file()
    name = device_name or f"pigeon-cli@{socket.gethostname()}"[:64]

    async def request() -> str:
        async with PigeonClient(server) as client:
            return (await client.request_code(phone)).phone

    number = _run(request())
    console.print(f"A verification code was sent to {number}.", highlight=False)
    code = typer.prompt("Code").strip()

    async def verify(pin: str | None) -> Session:
        async with PigeonClient(server) as client:
            return await client.verify(number, code, name, platform="cli", pin=pin)

    try:
        session = asyncio.run(verify(None))
    except ApiError as exc:
        if exc.code != "pin_required":
            _fail(f"{exc.code}: {exc.message}")
        pin = typer.prompt("Two-step PIN", hide_input=True).strip()
        session = _run(verify(pin))
    except PigeonError as exc:
        _fail(f"{exc.code}: {exc.message}")
    save_session(path, server.rstrip("/"), session, number)
    console.print(
        f"Logged in as user {session.user_id} (device {session.device_id}); "
        f"session saved to {path}",
        highlight=False,
        soft_wrap=True,
    )


@chat.command()
def logout(session_file: SessionFile = None) -> None:
    """Revoke this device on the server and delete the session file."""
    path = session_file or default_session_file()
    server, session, _ = load_session(path)

    async def run() -> None:
        async with PigeonClient(server) as client:
            await client.logout(session)

    with contextlib.suppress(typer.Exit):  # already revoked: forget it all the same
        _run(run())
    path.unlink(missing_ok=True)
    console.print("Logged out.")


@chat.command("list")
def list_chats(session_file: SessionFile = None) -> None:
    """List your chats."""
    path = session_file or default_session_file()

    async def fetch(conn: Connection, client: PigeonClient) -> list[tuple[Any, str]]:
        rows = []
        for summary in await conn.get_chats():
            title = summary.name
            if summary.kind == "direct":
                details = await conn.get_chat(summary.chat_id)
                others = [m.user_id for m in details.members if m.user_id != conn.user_id]
                title = f"with {', '.join(others) or 'nobody'}"
            rows.append((summary, title))
        return rows

    rows = _with_connection(path, fetch)
    if not rows:
        console.print("No chats yet. Start one with: pigeon chat new --with USER_ID")
        return
    table = Table(
        Column("chat id", no_wrap=True),
        Column("kind", no_wrap=True),
        "name",
        Column("unread", justify="right", no_wrap=True),
        Column("role", no_wrap=True),
    )
    for summary, title in rows:
        table.add_row(summary.chat_id, summary.kind, title, str(summary.unread), summary.role)
    console.print(table)


@chat.command()
def new(
    with_: Annotated[
        list[str] | None, typer.Option("--with", help="The user to chat with (1:1 chat).")
    ] = None,
    group: Annotated[str | None, typer.Option(help="Create a group with this name.")] = None,
    member: Annotated[
        list[str] | None, typer.Option("--member", "-m", help="A group member (repeatable).")
    ] = None,
    session_file: SessionFile = None,
) -> None:
    """Start a 1:1 chat (--with USER_ID) or a group (--group NAME --member ID ...)."""
    path = session_file or default_session_file()
    people = [*(with_ or []), *(member or [])]
    if group is None and len(with_ or []) != 1:
        _fail("Give one --with USER_ID for a 1:1 chat, or --group NAME with --member IDs.")
    if group is None and member:
        _fail("--member is for groups: add --group NAME.")
    if group is not None and not people:
        _fail("A group needs at least one --member.")

    async def create(conn: Connection, client: PigeonClient) -> tuple[str, bool]:
        created = await conn.create_chat(people, name=group)
        return created.chat_id, created.created

    chat_id, created = _with_connection(path, create)
    console.print(f"{'Created' if created else 'Existing'} chat {chat_id}", highlight=False)


@chat.command()
def send(
    chat_id: Annotated[str, typer.Argument(help="The chat (see `pigeon chat list`).")],
    text: Annotated[str, typer.Argument(help="The message.")],
    session_file: SessionFile = None,
) -> None:
    """Send one message and exit."""
    path = session_file or default_session_file()

    async def deliver(conn: Connection, client: PigeonClient) -> SentMessage:
        return await conn.send_message(chat_id, text)

    sent = _with_connection(path, deliver)
    console.print(f"✓ sent #{sent.seq} ({sent.message_id})", highlight=False)


@chat.command("open")
def open_chat(
    chat_id: Annotated[str, typer.Argument(help="The chat (see `pigeon chat list`).")],
    session_file: SessionFile = None,
) -> None:
    """Open a chat: messages appear as they arrive; type a line to send it.

    Leave with /quit or end of input (Ctrl-D).
    """
    path = session_file or default_session_file()
    stdin = sys.stdin

    async def live(conn: Connection, client: PigeonClient) -> None:
        details = await conn.get_chat(chat_id)
        names = await _member_names(client, conn, details)
        view = ChatView(chat_id, conn.user_id, names)
        view.header(details)
        await _chat_loop(conn, view, stdin)

    _with_connection(path, live)


# -- the live chat -------------------------------------------------------------------


async def _member_names(
    client: PigeonClient, conn: Connection, details: ChatDetails
) -> dict[str, str]:
    names = {}
    for member in details.members:
        if member.user_id == conn.user_id:
            names[member.user_id] = "you"
            continue
        try:
            profile = await client.get_user(conn.session, member.user_id)
            names[member.user_id] = profile.name or _short(member.user_id)
        except PigeonError:
            names[member.user_id] = _short(member.user_id)
    return names


def _short(user_id: str) -> str:
    return f"user…{user_id[-6:]}"


class ChatView:
    """Prints one chat's messages and receipts (✓ sent, ✓✓ delivered, blue ✓✓ read)."""

    def __init__(self, chat_id: str, me: str, names: dict[str, str]) -> None:
        self.chat_id = chat_id
        self.me = me
        self.names = names

    def name(self, user_id: str | None) -> str:
        if user_id is None:
            return "pigeon"
        return self.names.get(user_id) or _short(user_id)

    def header(self, details: ChatDetails) -> None:
        others = [self.name(m.user_id) for m in details.members if m.user_id != self.me]
        title = details.name if details.kind == "group" else f"chat with {', '.join(others)}"
        console.rule(Text(title, style="bold"))
        console.print(
            Text("Type a message and press Enter; /quit or Ctrl-D to leave.", style="dim")
        )

    def message(self, event: MessageEvent) -> None:
        if event.kind == "system":
            console.print(Text(f"— {self._system_text(event.system or {})} —", style="dim italic"))
            return
        who = self.name(event.sender_id)
        line = Text.assemble(
            (f"[{_clock(event.created_at)}] ", "dim"),
            (who, "bold green" if event.sender_id == self.me else "bold cyan"),
            ": ",
            event.text,
            (f"  #{event.seq}", "dim"),
        )
        console.print(line)

    def sent(self, sent: SentMessage, text: str) -> None:
        line = Text.assemble(
            (f"[{_clock(sent.created_at)}] ", "dim"),
            ("you", "bold green"),
            ": ",
            text,
            (f"  #{sent.seq} ", "dim"),
            ("✓", "dim"),
        )
        console.print(line)

    def receipt(self, event: ReceiptEvent) -> None:
        style = "bold blue" if event.type == "read" else "dim"
        console.print(
            Text.assemble(
                ("  ✓✓ ", style),
                (f"{event.type} by {self.name(event.user_id)} up to #{event.up_to_seq}", "dim"),
            )
        )

    def notice(self, text: str) -> None:
        console.print(Text(text, style="dim"))

    def _system_text(self, system: dict[str, Any]) -> str:
        action = system.get("action")
        actor = self.name(system.get("actorId"))
        target = self.name(system.get("userId"))
        texts = {
            "created": f"{actor} created the group {system.get('name', '')!r}",
            "added": f"{actor} added {target}",
            "removed": f"{actor} removed {target}",
            "left": f"{target} left",
            "role": f"{target} is now {system.get('role', '?')}",
            "renamed": f"{actor} renamed the group to {system.get('name', '')!r}",
        }
        return texts.get(str(action), f"group change: {action}")


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M")


async def _chat_loop(conn: Connection, view: ChatView, stdin: IO[str]) -> None:
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _start_line_reader(stdin, asyncio.get_running_loop(), lines)
    events = asyncio.create_task(_show_events(conn, view))
    try:
        while True:
            next_line = asyncio.ensure_future(lines.get())
            done, _ = await asyncio.wait({next_line, events}, return_when=asyncio.FIRST_COMPLETED)
            if events in done:
                next_line.cancel()
                events.result()  # the connection ended: raise its error
                return
            line = next_line.result()
            if line is None or line.strip() == "/quit":
                return
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                view.sent(await conn.send_message(view.chat_id, text), text)
            except (CommandError, RequestTimeout) as exc:
                console.print(Text(f"not sent: {exc.code}: {exc.message}", style="red"))
    finally:
        events.cancel()
        with contextlib.suppress(asyncio.CancelledError, PigeonError):
            await events


async def _show_events(conn: Connection, view: ChatView) -> None:
    caught_up = False
    async for event in conn.events():
        if isinstance(event, MessageEvent):
            if event.chat_id != view.chat_id:
                view.notice(f"• new message in chat {event.chat_id}")
                continue
            view.message(event)
            if event.sender_id != conn.user_id:
                with contextlib.suppress(RequestTimeout):
                    await conn.mark_read(view.chat_id, event.seq)
        elif isinstance(event, ReceiptEvent) and event.chat_id == view.chat_id:
            view.receipt(event)
        elif isinstance(event, TypingEvent) and event.chat_id == view.chat_id:
            if event.state == "composing":
                view.notice(f"{view.name(event.user_id)} is typing…")
        elif isinstance(event, PresenceEvent) and event.user_id in view.names:
            view.notice(f"{view.name(event.user_id)} is {event.state}")
        elif isinstance(event, DrainedEvent) and not caught_up:
            caught_up = True
            view.notice("— up to date —")


def _start_line_reader(
    stream: IO[str], loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]
) -> None:
    """Read ``stream`` in a daemon thread (a blocked read must not keep the process alive)."""

    def put(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(lines.put_nowait, line)

    def read() -> None:
        try:
            for line in iter(stream.readline, ""):
                put(line)
        except (OSError, ValueError):  # closed under us
            pass
        finally:
            put(None)

    threading.Thread(target=read, name="pigeon-chat-stdin", daemon=True).start()
