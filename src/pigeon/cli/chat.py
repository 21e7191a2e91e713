"""``pigeon chat``: a terminal client built on the ``pigeon.client`` SDK.

``login`` registers this terminal as a device and keeps the session in a file
readable only by its owner; the other commands use that session. A device has
one live connection at a time: running a command while ``open`` runs with
the same session file replaces the ``open`` connection.

Files: ``send-file`` uploads and sends one, ``save`` downloads one by its
attachment id, and ``open`` shows the files of incoming messages and saves
them (to ``--download-dir``) before the message is acknowledged: the server
deletes a file once every recipient device has acknowledged its message.
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
    Attachment,
    AuthenticationError,
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


def _with_client(path: Path, action: Callable[[PigeonClient, Session], Awaitable[T]]) -> T:
    """Run an HTTP-only action (no WebSocket, so a running ``open`` is not replaced).

    An access token the server refuses is refreshed once and stored.
    """
    server, session, record = load_session(path)

    async def run() -> T:
        async with PigeonClient(server) as client:
            try:
                return await action(client, session)
            except AuthenticationError as exc:
                if exc.code != "invalid_token":
                    raise
            fresh = await client.refresh(session)
            save_session(path, server, fresh, record.get("phone"))
            return await action(client, fresh)

    return _run(run())


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


@chat.command("send-file")
def send_file(
    chat_id: Annotated[str, typer.Argument(help="The chat (see `pigeon chat list`).")],
    file: Annotated[
        Path, typer.Argument(help="The file to send.", exists=True, dir_okay=False, readable=True)
    ],
    caption: Annotated[str, typer.Option(help="Text sent with the file.")] = "",
    session_file: SessionFile = None,
) -> None:
    """Upload a file and send it in a message (with an optional caption)."""
    path = session_file or default_session_file()

    async def deliver(conn: Connection, client: PigeonClient) -> tuple[Attachment, SentMessage]:
        attachment = await client.upload_file(conn.session, file)
        return attachment, await conn.send_message(chat_id, caption, attachments=[attachment])

    attachment, sent = _with_connection(path, deliver)
    console.print(
        f"Uploaded {describe_attachment(attachment)}", markup=False, highlight=False, soft_wrap=True
    )
    console.print(f"✓ sent #{sent.seq} ({sent.message_id})", highlight=False)


@chat.command()
def save(
    attachment_id: Annotated[str, typer.Argument(help="The attachment (as `open` shows it).")],
    dest: Annotated[Path, typer.Argument(help="Where to save it (a file, or a directory).")],
    session_file: SessionFile = None,
) -> None:
    """Download an attachment.

    Possible for files you sent, and for files of messages some device of
    yours has not acknowledged yet (``open`` saves incoming files itself).
    """
    path = session_file or default_session_file()
    target = dest / attachment_id if dest.is_dir() else dest

    async def fetch(client: PigeonClient, session: Session) -> Path:
        return await client.download_attachment(session, attachment_id, target)

    saved = _with_client(path, fetch)
    size = saved.stat().st_size
    console.print(
        f"Saved {saved} ({human_size(size)})", markup=False, highlight=False, soft_wrap=True
    )


def default_download_dir() -> Path:
    return Path.home() / "Downloads" / "pigeon"


@chat.command("open")
def open_chat(
    chat_id: Annotated[str, typer.Argument(help="The chat (see `pigeon chat list`).")],
    download_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where incoming files are saved (default: ~/Downloads/pigeon).",
            envvar="PIGEON_DOWNLOAD_DIR",
            show_envvar=True,
            file_okay=False,
        ),
    ] = None,
    download: Annotated[
        bool,
        typer.Option(
            help="Save incoming files. Without it they are only listed, and are gone "
            "from the server once every device of the recipients acknowledged them."
        ),
    ] = True,
    session_file: SessionFile = None,
) -> None:
    """Open a chat: messages appear as they arrive; type a line to send it.

    Type /send PATH to send a file. Files that arrive are listed as
    [name, type, size, id] and saved to the download directory. Leave with
    /quit or end of input (Ctrl-D).
    """
    path = session_file or default_session_file()
    stdin = sys.stdin
    folder = (download_dir or default_download_dir()) if download else None

    async def live(conn: Connection, client: PigeonClient) -> None:
        details = await conn.get_chat(chat_id)
        names = await _member_names(client, conn, details)
        view = ChatView(chat_id, conn.user_id, names)
        view.header(details)
        await _chat_loop(conn, view, stdin, client, folder)

    _with_connection(path, live)


# -- files ---------------------------------------------------------------------------


def human_size(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``..."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def describe_attachment(attachment: Attachment) -> str:
    """``[name, type, size, id]``, as ``open`` lists a file."""
    return (
        f"[{attachment.file_name}, {attachment.mime_type}, "
        f"{human_size(attachment.size)}, {attachment.attachment_id}]"
    )


def download_target(folder: Path, attachment: Attachment) -> Path:
    """A free path in ``folder`` for the file: its own name, never a path part or a dot name."""
    name = Path(attachment.file_name.replace("\\", "/")).name.strip()
    if name in ("", ".", "..") or name.startswith("."):
        name = f"{attachment.attachment_id}{Path(name).suffix}"
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate = folder / name
    number = 1
    while candidate.exists():
        candidate = folder / f"{stem} ({number}){suffix}"
        number += 1
    return candidate


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
        self.files(event.attachments)

    def sent(self, sent: SentMessage, text: str, attachments: tuple[Attachment, ...] = ()) -> None:
        line = Text.assemble(
            (f"[{_clock(sent.created_at)}] ", "dim"),
            ("you", "bold green"),
            ": ",
            text,
            (f"  #{sent.seq} ", "dim"),
            ("✓", "dim"),
        )
        console.print(line)
        self.files(attachments)

    def files(self, attachments: tuple[Attachment, ...]) -> None:
        for attachment in attachments:
            console.print(
                Text.assemble(("  📎 ", "dim"), describe_attachment(attachment)), soft_wrap=True
            )

    def receipt(self, event: ReceiptEvent) -> None:
        style = "bold blue" if event.type == "read" else "dim"
        console.print(
            Text.assemble(
                ("  ✓✓ ", style),
                (f"{event.type} by {self.name(event.user_id)} up to #{event.up_to_seq}", "dim"),
            )
        )

    def notice(self, text: str) -> None:
        console.print(Text(text, style="dim"), soft_wrap=True)

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


async def _chat_loop(
    conn: Connection,
    view: ChatView,
    stdin: IO[str],
    client: PigeonClient | None = None,
    download_dir: Path | None = None,
) -> None:
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _start_line_reader(stdin, asyncio.get_running_loop(), lines)
    events = asyncio.create_task(_show_events(conn, view, client, download_dir))
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
            if text.strip() == "/send" or text.lstrip().startswith("/send "):
                if client is None:
                    console.print(Text("not sent: no HTTP client", style="red"))
                else:
                    await _send_file(conn, client, view, text.strip()[len("/send") :].strip())
                continue
            try:
                view.sent(await conn.send_message(view.chat_id, text), text)
            except (CommandError, RequestTimeout) as exc:
                console.print(Text(f"not sent: {exc.code}: {exc.message}", style="red"))
    finally:
        events.cancel()
        with contextlib.suppress(asyncio.CancelledError, PigeonError):
            await events


async def _send_file(conn: Connection, client: PigeonClient, view: ChatView, argument: str) -> None:
    """``/send PATH``: upload the file and send it."""
    if len(argument) >= 2 and argument[0] == argument[-1] and argument[0] in "'\"":
        argument = argument[1:-1]
    if not argument:
        console.print(Text("usage: /send PATH", style="red"))
        return
    file, size = await asyncio.to_thread(_file_and_size, argument)
    if size is None:
        console.print(Text(f"not sent: no file {file}", style="red"), soft_wrap=True)
        return
    view.notice(f"uploading {file.name} ({human_size(size)})…")
    try:
        attachment = await client.upload_file(conn.session, file)
        sent = await conn.send_message(view.chat_id, attachments=[attachment])
    except (ApiError, CommandError, RequestTimeout, OSError) as exc:
        reason = f"{exc.code}: {exc.message}" if isinstance(exc, PigeonError) else str(exc)
        console.print(Text(f"not sent: {reason}", style="red"), soft_wrap=True)
        return
    view.sent(sent, "", (attachment,))


def _file_and_size(argument: str) -> tuple[Path, int | None]:
    file = Path(argument).expanduser()
    return file, file.stat().st_size if file.is_file() else None


async def _save_files(
    client: PigeonClient, conn: Connection, view: ChatView, event: MessageEvent, folder: Path
) -> None:
    """Download a message's files now: the next event acks the message, and the server
    deletes its files once every recipient device has acked it."""
    for attachment in event.attachments:
        try:
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            target = await asyncio.to_thread(download_target, folder, attachment)
            saved = await client.download_attachment(conn.session, attachment.attachment_id, target)
        except (PigeonError, OSError) as exc:
            reason = f"{exc.code}: {exc.message}" if isinstance(exc, PigeonError) else str(exc)
            view.notice(f"  could not save {attachment.file_name}: {reason}")
            continue
        view.notice(f"  saved to {saved}")


async def _show_events(
    conn: Connection,
    view: ChatView,
    client: PigeonClient | None = None,
    download_dir: Path | None = None,
) -> None:
    caught_up = False
    async for event in conn.events():
        if isinstance(event, MessageEvent):
            if event.chat_id != view.chat_id:
                view.notice(f"• new message in chat {event.chat_id}")
                if event.attachments and client is not None and download_dir is not None:
                    await _save_files(client, conn, view, event, download_dir)
                continue
            view.message(event)
            if event.attachments and client is not None and download_dir is not None:
                await _save_files(client, conn, view, event, download_dir)
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
