"""``pigeon chat``: a terminal client built on the ``pigeon.client`` SDK.

``login`` registers this terminal as a device and keeps the session in a file
readable only by its owner; the other commands use that session. Next to it
is the device's local store (see ``chat_session``): every message and receipt
received is kept there before it is acknowledged, so ``open`` shows a chat's
history and ``list`` the last message and unread count of every chat.

A device has one live connection at a time: running a command while
``open`` runs with the same session file takes the connection over, and
``open`` offers to take it back (``/reconnect``).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from pigeon.cli import chat_input, terminal
from pigeon.cli.chat_errors import explain
from pigeon.cli.chat_live import (
    Lines,
    LiveChat,
    after_replaced,
    download_target,
    profile_names,
    receive_backlog,
)
from pigeon.cli.chat_session import (
    SessionFile,
    connected,
    default_session_file,
    forget,
    load_session,
    run,
    save_session,
    with_client,
    with_connection,
)
from pigeon.cli.chat_view import Names, chat_title, describe_attachment, human_size
from pigeon.cli.terminal import fail, say
from pigeon.client import (
    ApiError,
    Attachment,
    ChatSummary,
    Connection,
    Contact,
    LocalStore,
    PigeonClient,
    PigeonError,
    Profile,
    SentMessage,
    Session,
    StoredMessage,
)

__all__ = ["chat", "download_target", "human_size", "save_session"]

chat = typer.Typer(
    help="Chat from the terminal: log in, list and open chats, send messages.",
    no_args_is_help=True,
)

NAME_MAX_LENGTH = 64
CODE_ATTEMPTS = 3

ChatId = Annotated[
    str,
    typer.Argument(help="The chat (its id, from `pigeon chat list`).", callback=chat_input.chat_id),
]


MessageId = Annotated[
    str,
    typer.Argument(
        help="The message (its id, as `pigeon chat send` and `open` show them).",
        callback=chat_input.message_id,
    ),
]


def default_download_dir() -> Path:
    return Path.home() / "Downloads" / "pigeon"


DownloadDir = Annotated[
    Path | None,
    typer.Option(
        help="Where incoming files are saved (default: ~/Downloads/pigeon).",
        envvar="PIGEON_DOWNLOAD_DIR",
        show_envvar=True,
        file_okay=False,
    ),
]
Download = Annotated[
    bool,
    typer.Option(
        help="Save incoming files. Without it they are only listed, and are gone "
        "from the server once every device of the recipients acknowledged them."
    ),
]


# -- account -------------------------------------------------------------------------


@chat.command()
def login(
    server: Annotated[
        str, typer.Option(help="The server's URL.", envvar="PIGEON_SERVER", show_envvar=True)
    ],
    phone: Annotated[str, typer.Option(help="Your number: + and the country code first.")],
    device_name: Annotated[
        str | None, typer.Option(help="How this device is listed (default: pigeon-cli@HOSTNAME).")
    ] = None,
    session_file: SessionFile = None,
) -> None:
    """Register this terminal: a code is texted to PHONE, then asked for here."""
    url = chat_input.server_url(server)
    number = chat_input.phone_number(phone)
    path = session_file or default_session_file()
    name = device_name or f"pigeon-cli@{socket.gethostname()}"[:64]

    async def request() -> str:
        async with PigeonClient(url) as client:
            return (await client.request_code(number)).phone

    number = run(request())
    say(f"A verification code was sent to {number}.")
    session = _verify(url, number, name)
    save_session(path, url, session, number)
    say(
        f"Logged in as user {session.user_id} (device {session.device_id}); session saved to {path}"
    )
    say(f"Others start a chat with you with: pigeon chat new --with {session.user_id}", "dim")


def _verify(url: str, number: str, device_name: str) -> Session:
    """Ask for the code (again, when it is not six digits or is wrong), and the PIN if set."""

    async def verify(code: str, pin: str | None) -> Session:
        async with PigeonClient(url) as client:
            return await client.verify(number, code, device_name, platform="cli", pin=pin)

    for attempt in range(1, CODE_ATTEMPTS + 1):
        last = attempt == CODE_ATTEMPTS
        code = typer.prompt("Code").strip()
        if not chat_input.is_code(code):
            if last:
                fail("The code is the six digits of the SMS. Log in again for a new code.")
            say("The code is six digits, like 123456: try again.", "yellow")
            continue
        try:
            return asyncio.run(verify(code, None))
        except ApiError as exc:
            if exc.code == "pin_required":
                pin = typer.prompt("Two-step PIN", hide_input=True).strip()
                return run(verify(code, pin))
            if exc.code != "invalid_code" or last:
                fail(explain(exc))
            say("That code is not right (or has expired): try again.", "yellow")
        except PigeonError as exc:
            fail(explain(exc))
    raise AssertionError("unreachable")


@chat.command()
def logout(session_file: SessionFile = None) -> None:
    """Revoke this device on the server; delete its session file and local store."""
    saved = load_session(session_file)

    async def revoke() -> None:
        async with PigeonClient(saved.server) as client:
            await client.logout(saved.session)

    try:
        asyncio.run(revoke())
    except PigeonError as exc:  # already revoked, or the server is away: forget it all the same
        say(f"(The server was not told: {explain(exc, saved)})", "dim")
    forget(saved)
    say("Logged out; this device's messages were deleted from this computer.")


@chat.command()
def whoami(session_file: SessionFile = None) -> None:
    """Your user id (what others need to start a chat with you), name and device."""
    saved = load_session(session_file)

    async def me(client: PigeonClient, session: Session) -> Profile:
        return await client.get_user(session, session.user_id)

    profile = with_client(session_file, me)
    say(f"user id: {profile.user_id}")
    say(f"name:    {profile.name or '(none; set one with: pigeon chat set-name NAME)'}")
    say(f"phone:   {saved.phone or '?'}")
    say(f"device:  {saved.session.device_id} on {saved.server}")


@chat.command("set-name")
def set_name(
    name: Annotated[str, typer.Argument(help="What others see (at most 64 characters).")],
    session_file: SessionFile = None,
) -> None:
    """Set the name others see instead of your user id."""
    name = name.strip()
    if len(name) > NAME_MAX_LENGTH:
        fail(f"A name has at most {NAME_MAX_LENGTH} characters; this one has {len(name)}.")

    async def update(client: PigeonClient, session: Session) -> Profile:
        return await client.update_profile(session, name=name)

    profile = with_client(session_file, update)
    say(f"Your name is now {profile.name!r}." if profile.name else "Your name is cleared.")


# -- chats -----------------------------------------------------------------------------


@chat.command("list")
def list_chats(
    session_file: SessionFile = None,
    download_dir: DownloadDir = None,
    download: Download = True,
) -> None:
    """Your chats, with the last message and how many others' messages are unread.

    Messages waiting on the server are received first (and kept in the local
    store; their files are saved to the download directory).
    """
    folder = (download_dir or default_download_dir()) if download else None

    async def fetch(conn: Connection, client: PigeonClient, store: LocalStore) -> list[ChatRow]:
        await receive_backlog(conn, client, folder, lambda line: say(line, "dim"))
        summaries = await conn.get_chats()
        last = await store.last_messages()
        details = [await conn.get_chat(summary.chat_id) for summary in summaries]
        people = {m.user_id for chat in details for m in chat.members}
        names = await profile_names(client, conn, people)
        rows = [
            ChatRow(summary, chat_title(chat, names), last.get(summary.chat_id), names)
            for summary, chat in zip(summaries, details, strict=True)
        ]
        return sorted(rows, key=ChatRow.last_activity, reverse=True)

    rows = with_connection(session_file, fetch)
    if not rows:
        say("No chats yet. Start one with: pigeon chat new --with USER_ID")
        return
    table = Table(
        Column("chat", ratio=1),
        Column("last message", ratio=2),
        Column("unread", justify="right", no_wrap=True),
        Column("id", no_wrap=True, min_width=26),
    )
    for row in rows:
        summary = row.summary
        label = f"{row.title} (group)" if summary.kind == "group" else row.title
        preview = row.names.preview(row.last) if row.last is not None else ""
        table.add_row(label, preview, str(summary.unread or 0), summary.chat_id)
    terminal.console.print(table)


@dataclass(frozen=True, slots=True)
class ChatRow:
    """One line of ``list``."""

    summary: ChatSummary
    title: str
    last: StoredMessage | None
    names: Names

    def last_activity(self) -> datetime:
        return self.last.created_at if self.last else datetime.min.replace(tzinfo=UTC)


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
    """Start a 1:1 chat (--with USER_ID) or a group (--group NAME --member USER_ID ...)."""
    if group is None and len(with_ or []) != 1:
        fail("Give one --with USER_ID for a 1:1 chat, or --group NAME with --member USER_IDs.")
    if group is None and member:
        fail("--member is for groups: add --group NAME.")
    people = [chat_input.user_id(u, "--with") for u in with_ or []]
    people += [chat_input.user_id(u, "--member") for u in member or []]
    if group is not None and not people:
        fail("A group needs at least one --member USER_ID.")

    async def create(conn: Connection, client: PigeonClient, store: LocalStore) -> tuple[str, bool]:
        created = await conn.create_chat(people, name=group)
        return created.chat_id, created.created

    chat_id, created = with_connection(session_file, create)
    say(f"{'Created' if created else 'Existing'} chat {chat_id}")


@chat.command()
def add(
    chat_id: ChatId,
    users: Annotated[list[str], typer.Argument(help="The users to add (their ids).")],
    session_file: SessionFile = None,
) -> None:
    """Add people to a group (admins only)."""
    ids = [chat_input.user_id(u, "USER") for u in users]

    async def change(conn: Connection, client: PigeonClient, store: LocalStore) -> Names:
        for user_id in ids:
            await conn.add_member(chat_id, user_id)
        return await profile_names(client, conn, set(ids))

    names = with_connection(session_file, change)
    say(f"Added {', '.join(names(u) for u in ids)}.")


@chat.command()
def remove(
    chat_id: ChatId,
    user: Annotated[str, typer.Argument(help="The user to remove (their id).")],
    session_file: SessionFile = None,
) -> None:
    """Remove someone from a group (admins only)."""
    user_id = chat_input.user_id(user, "USER")

    async def change(conn: Connection, client: PigeonClient, store: LocalStore) -> Names:
        await conn.remove_member(chat_id, user_id)
        return await profile_names(client, conn, {user_id})

    names = with_connection(session_file, change)
    say(f"Removed {names(user_id)}.")


@chat.command()
def rename(
    chat_id: ChatId,
    name: Annotated[str, typer.Argument(help="The group's new name.")],
    session_file: SessionFile = None,
) -> None:
    """Rename a group (admins only)."""

    async def change(conn: Connection, client: PigeonClient, store: LocalStore) -> None:
        await conn.rename(chat_id, name)

    with_connection(session_file, change)
    say(f"Renamed the group to {name!r}.")


@chat.command()
def leave(chat_id: ChatId, session_file: SessionFile = None) -> None:
    """Leave a group (if you were its last admin, the longest-standing member becomes one)."""

    async def change(conn: Connection, client: PigeonClient, store: LocalStore) -> None:
        await conn.leave(chat_id)

    with_connection(session_file, change)
    say("You left the group.")


# -- messages and files ------------------------------------------------------------------


@chat.command()
def send(
    chat_id: ChatId,
    text: Annotated[str, typer.Argument(help="The message.")],
    session_file: SessionFile = None,
) -> None:
    """Send one message and exit."""

    async def deliver(conn: Connection, client: PigeonClient, store: LocalStore) -> SentMessage:
        return await conn.send_message(chat_id, text)

    sent = with_connection(session_file, deliver)
    say(f"✓ sent #{sent.seq} ({sent.message_id})")


@chat.command()
def react(
    chat_id: ChatId,
    message_id: MessageId,
    emoji: Annotated[str, typer.Argument(help='One emoji; "" removes your reaction.')],
    session_file: SessionFile = None,
) -> None:
    """React to a message with one emoji (replacing your earlier reaction)."""

    async def change(conn: Connection, client: PigeonClient, store: LocalStore) -> datetime:
        return await conn.react(chat_id, message_id, emoji)

    with_connection(session_file, change)
    say(f"✓ reacted {emoji}" if emoji else "✓ reaction removed")


@chat.command()
def edit(
    chat_id: ChatId,
    message_id: MessageId,
    text: Annotated[str, typer.Argument(help="The new text, in full.")],
    session_file: SessionFile = None,
) -> None:
    """Edit a text message you sent (within 15 minutes, or the server's edit window)."""

    async def change(conn: Connection, client: PigeonClient, store: LocalStore) -> datetime:
        return await conn.edit_message(chat_id, message_id, text)

    with_connection(session_file, change)
    say(f"✓ edited ({message_id})")


@chat.command()
def delete(chat_id: ChatId, message_id: MessageId, session_file: SessionFile = None) -> None:
    """Delete a message for everyone: yours, or any in a group you are an admin of."""

    async def change(conn: Connection, client: PigeonClient, store: LocalStore) -> datetime:
        return await conn.delete_message(chat_id, message_id)

    with_connection(session_file, change)
    say(f"✓ deleted for everyone ({message_id})")


@chat.command()
def forward(
    chat_id: ChatId,
    message_id: MessageId,
    to: Annotated[
        str,
        typer.Argument(help="The chat to forward it to.", callback=chat_input.chat_id),
    ],
    session_file: SessionFile = None,
) -> None:
    """Forward a message this device has (its text and files) to another chat."""

    async def deliver(
        conn: Connection, client: PigeonClient, store: LocalStore
    ) -> SentMessage | None:
        await receive_backlog(conn, client, None, lambda line: None)  # it may be queued still
        message = await store.message(chat_id, message_id)
        return None if message is None else await conn.forward(to, message)

    sent = with_connection(session_file, deliver)
    if sent is None:
        fail(
            "This device does not have that message: `pigeon chat open CHAT_ID` shows the "
            "ones it has, with their ids."
        )
    say(f"✓ forwarded as #{sent.seq} ({sent.message_id})")


@chat.command("send-file")
def send_file(
    chat_id: ChatId,
    file: Annotated[
        Path, typer.Argument(help="The file to send.", exists=True, dir_okay=False, readable=True)
    ],
    caption: Annotated[str, typer.Option(help="Text sent with the file.")] = "",
    session_file: SessionFile = None,
) -> None:
    """Upload a file and send it in a message (with an optional caption)."""

    async def deliver(
        conn: Connection, client: PigeonClient, store: LocalStore
    ) -> tuple[Attachment, SentMessage]:
        attachment = await client.upload_file(conn.session, file)
        return attachment, await conn.send_message(chat_id, caption, attachments=[attachment])

    attachment, sent = with_connection(session_file, deliver)
    say(f"Uploaded {describe_attachment(attachment)}")
    say(f"✓ sent #{sent.seq} ({sent.message_id})")


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
    target = dest / attachment_id if dest.is_dir() else dest

    async def fetch(client: PigeonClient, session: Session) -> Path:
        return await client.download_attachment(session, attachment_id, target)

    saved = with_client(session_file, fetch)
    say(f"Saved {saved} ({human_size(saved.stat().st_size)})")


ChatOrPhone = Annotated[
    str,
    typer.Argument(
        metavar="CHAT",
        help="The chat's id (from `pigeon chat list`), or a phone number: "
        "the 1:1 chat with that person, started if need be.",
        callback=chat_input.chat_or_phone,
    ),
]


@chat.command("open")
def open_chat(
    chat: ChatOrPhone,
    download_dir: DownloadDir = None,
    download: Download = True,
    session_file: SessionFile = None,
) -> None:
    """Open a chat: its history, then messages as they arrive; type a line to send it.

    Type /send PATH to send a file, /info N to see who received and read your
    message #N. Files that arrive are listed as \\[name, type, size, id] and
    saved to the download directory. Messages of other chats are shown as
    they arrive, and kept for when you open those. Leave with /quit or end of
    input (Ctrl-D).
    """
    folder = (download_dir or default_download_dir()) if download else None
    stdin = sys.stdin
    chat_id = _chat_with_number(chat, session_file) if chat_input.is_phone(chat) else chat

    async def main() -> None:
        lines = Lines(stdin)

        async def live(conn: Connection, client: PigeonClient, store: LocalStore) -> str:
            details = await conn.get_chat(chat_id)
            names = await profile_names(client, conn, {m.user_id for m in details.members})
            return await LiveChat(conn, client, store, details, names, folder).run(lines)

        while True:
            saved = load_session(session_file)  # tokens may have been rotated meanwhile
            if await connected(saved, live) == "quit":
                return
            if not await after_replaced(lines):
                return

    run(main(), load_session(session_file))


def _chat_with_number(phone: str, session_file: Path | None) -> str:
    """The 1:1 chat with the user who has ``phone`` (who becomes a contact)."""

    async def find(client: PigeonClient, session: Session) -> Contact | None:
        return await client.find_user(session, phone)

    contact = with_client(session_file, find)
    if contact is None:
        fail(f"Nobody on this server has the number {phone}.")
    if contact.user_id == load_session(session_file).session.user_id:
        fail("That is your own number.")

    async def create(conn: Connection, client: PigeonClient, store: LocalStore) -> str:
        return (await conn.create_chat([contact.user_id])).chat_id

    chat_id = with_connection(session_file, create)
    say(f"Chat with {contact.name or contact.phone} ({contact.phone})", "dim")
    return chat_id


@chat.command()
def contacts(
    phones: Annotated[
        list[str] | None,
        typer.Argument(help="Numbers to look up first (+ and the country code, or local)."),
    ] = None,
    session_file: SessionFile = None,
) -> None:
    """Your contacts by name; with PHONES, look those numbers up first (those on the
    server become contacts; the others are not kept)."""

    async def fetch(client: PigeonClient, session: Session) -> tuple[int, list[Contact]]:
        found = 0
        if phones:
            found = len((await client.lookup_contacts(session, list(phones))).matches)
        return found, await client.list_contacts(session)

    found, people = with_client(session_file, fetch)
    if phones:
        say(f"{found} of {len(phones)} number(s) are on this server.")
    if not people:
        say("No contacts yet. Look numbers up with: pigeon chat contacts +14155550100 ...")
        return
    table = Table(Column("name", ratio=1), Column("phone", no_wrap=True), Column("about", ratio=2))
    for person in people:
        table.add_row(person.name or "(no name)", person.phone, person.about)
    terminal.console.print(table)
