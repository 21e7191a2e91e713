"""``pigeon chat open`` and the backlog ``list`` receives: events in, typed lines out.

Every message and receipt is kept in the device's local store by the
connection before it is handed over (and so before it is acknowledged), and
the files of a message are saved before the next event is asked for, since
acknowledging a message lets the server delete its files. Messages of other
chats are shown in full while a chat is open, and are in that chat's
history when it is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal

from pigeon.cli import terminal
from pigeon.cli.chat_view import ChatView, Message, Names, chat_title, human_size
from pigeon.cli.receipt_status import DeliveryStatus, ReceiptProgress
from pigeon.client import (
    ApiError,
    Attachment,
    ChatDetails,
    CommandError,
    Connection,
    ConnectionClosed,
    DrainedEvent,
    LocalStore,
    MessageDeletedEvent,
    MessageEditedEvent,
    MessageEvent,
    PigeonClient,
    PigeonError,
    PresenceEvent,
    ReactionEvent,
    ReceiptEvent,
    RequestTimeout,
    SentMessage,
    StoredMessage,
    TypingEvent,
)

HISTORY = 30  # messages shown from the store when a chat opens
OWN_WINDOW = 500  # own messages looked at for receipts
Outcome = Literal["quit", "replaced"]


class Lines:
    """stdin's lines, read in a daemon thread (a blocked read must not keep the process).

    One per ``open`` command: a line typed while the connection was being
    replaced stays here for the next connection instead of reaching the shell.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def put(line: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(self._queue.put_nowait, line)

        def read() -> None:
            try:
                for line in iter(stream.readline, ""):
                    put(line)
            except (OSError, ValueError):  # closed under us
                pass
            finally:
                put(None)

        threading.Thread(target=read, name="pigeon-chat-stdin", daemon=True).start()

    async def next(self) -> str | None:
        """The next line without its newline; None at the end of input."""
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)  # the end stays the end
            return None
        return line.rstrip("\r\n")


async def profile_names(client: PigeonClient, conn: Connection, user_ids: set[str]) -> Names:
    """Profile names of ``user_ids`` (a short id for those without one, or out of reach)."""
    names: dict[str, str] = {}
    for user_id in sorted(user_ids - {conn.user_id}):
        with contextlib.suppress(PigeonError):
            names[user_id] = (await client.get_user(conn.session, user_id)).name
    return Names(conn.user_id, names)


async def save_files(
    client: PigeonClient, conn: Connection, message: Message, folder: Path | None
) -> list[str]:
    """Download the message's files now (before the ack); one report line per file."""
    if folder is None:
        return []
    reports = []
    for attachment in message.attachments:
        try:
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            target = await asyncio.to_thread(download_target, folder, attachment)
            saved = await client.download_attachment(conn.session, attachment.attachment_id, target)
        except (PigeonError, OSError) as exc:
            reason = f"{exc.code}: {exc.message}" if isinstance(exc, PigeonError) else str(exc)
            reports.append(f"  could not save {attachment.file_name}: {reason}")
            continue
        reports.append(f"  saved to {saved}")
    return reports


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


async def receive_backlog(
    conn: Connection, client: PigeonClient, folder: Path | None, report: Callable[[str], None]
) -> None:
    """Take everything queued for this device (stored by the connection) and save its files."""
    async for event in conn.events():
        if isinstance(event, DrainedEvent):
            return
        if isinstance(event, MessageEvent):
            for line in await save_files(client, conn, event, folder):
                report(line.strip())


class LiveChat:
    """One open chat on one connection: its history, then events and typed lines."""

    def __init__(
        self,
        conn: Connection,
        client: PigeonClient,
        store: LocalStore,
        details: ChatDetails,
        names: Names,
        folder: Path | None,
    ) -> None:
        self.conn = conn
        self.client = client
        self.store = store
        self.details = details
        self.names = names
        self.folder = folder
        self.chat_id = details.chat_id
        status = DeliveryStatus(conn.user_id, details.members)
        self.view = ChatView(self.chat_id, names, status, details.kind == "group")
        self.progress = ReceiptProgress(status)
        self.shown: set[str] = set()
        self.titles: dict[str, str] = {self.chat_id: chat_title(details, names)}

    async def run(self, lines: Lines) -> Outcome:
        """Show the chat until /quit or the end of input ("quit"), or until replaced."""
        self.view.header(self.titles[self.chat_id])
        await self.show_history()
        events = asyncio.create_task(self.show_events())
        try:
            while True:
                next_line = asyncio.ensure_future(lines.next())
                done, _ = await asyncio.wait(
                    {next_line, events}, return_when=asyncio.FIRST_COMPLETED
                )
                if events in done:
                    next_line.cancel()
                    events.result()  # the connection ended: raise its error
                    return "quit"
                line = next_line.result()
                if line is None or line.strip() == "/quit":
                    return "quit"
                await self.typed(line)
        except ConnectionClosed as exc:
            if exc.code == "replaced":
                return "replaced"
            raise
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError, PigeonError):
                await events

    async def show_history(self) -> None:
        """The chat as the store has it, with the state of this user's messages."""
        history = await self.store.history(self.chat_id, HISTORY)
        receipts = await self.store.receipts(self.chat_id)
        for message in history:
            state = self.view.status.of(message, receipts)
            self.view.message(message, state)
            self.shown.add(message.message_id)
        self.progress.advance([m for m in history if m.sender_id == self.conn.user_id], receipts)
        others = [m.seq for m in history if m.sender_id not in (None, self.conn.user_id)]
        if others and max(others) > await self.store.read_mark(self.chat_id):
            with contextlib.suppress(RequestTimeout):
                await self.conn.mark_read(self.chat_id, max(others))

    async def show_events(self) -> None:
        caught_up = False
        async for event in self.conn.events():
            if isinstance(event, MessageEvent):
                await self.on_message(event)
            elif isinstance(event, ReceiptEvent) and event.chat_id == self.chat_id:
                await self.on_receipt()
            elif isinstance(event, TypingEvent) and event.chat_id == self.chat_id:
                if event.state == "composing":
                    self.view.notice(f"{self.names(event.user_id)} is typing…")
            elif isinstance(event, PresenceEvent) and event.user_id in self.names.names:
                self.view.notice(f"{self.names(event.user_id)} is {event.state}")
            elif (
                isinstance(event, ReactionEvent | MessageEditedEvent | MessageDeletedEvent)
                and event.chat_id == self.chat_id
            ):
                self.view.notice(self.change_text(event))
            elif isinstance(event, DrainedEvent) and not caught_up:
                caught_up = True
                self.view.notice("— up to date —")

    def change_text(self, event: ReactionEvent | MessageEditedEvent | MessageDeletedEvent) -> str:
        """A reaction, an edit or a delete in words (the store keeps the message as sent)."""
        who = self.names(event.user_id)
        if isinstance(event, ReactionEvent):
            done = f"reacted {event.emoji} to" if event.emoji else "removed their reaction to"
            return f"{who} {done} {event.message_id}"
        if isinstance(event, MessageEditedEvent):
            return f"{who} edited {event.message_id}: {event.text}"
        return f"{who} deleted {event.message_id} for everyone"

    async def on_message(self, event: MessageEvent) -> None:
        try:
            await self.show_and_save(event)
        except asyncio.CancelledError:  # /quit in the middle: its files may be unsaved
            self.conn.hold_back()
            raise

    async def show_and_save(self, event: MessageEvent) -> None:
        if event.chat_id != self.chat_id:
            self.view.elsewhere(await self.title_of(event.chat_id), event)
        elif event.message_id not in self.shown:
            self.shown.add(event.message_id)
            self.view.message(event)
            if event.kind == "system":
                await self.refresh_members()
        for line in await save_files(self.client, self.conn, event, self.folder):
            self.view.notice(line)
        if event.chat_id == self.chat_id and event.sender_id != self.conn.user_id:
            with contextlib.suppress(RequestTimeout):
                await self.conn.mark_read(self.chat_id, event.seq)

    async def on_receipt(self) -> None:
        own = await self.own_messages()
        receipts = await self.store.receipts(self.chat_id)
        who = "everyone" if self.view.group else self.titles[self.chat_id]
        for state, seq in self.progress.advance(own, receipts):
            self.view.progress(state, seq, who)

    async def own_messages(self) -> list[StoredMessage]:
        history = await self.store.history(self.chat_id, OWN_WINDOW)
        return [m for m in history if m.sender_id == self.conn.user_id]

    async def refresh_members(self) -> None:
        """A group changed: receipts are counted over its members as they are now."""
        with contextlib.suppress(PigeonError):
            self.details = await self.conn.get_chat(self.chat_id)
            status = DeliveryStatus(self.conn.user_id, self.details.members)
            self.view.status = self.progress.status = status
            fresh = await profile_names(
                self.client, self.conn, {m.user_id for m in self.details.members}
            )
            self.names.names.update(fresh.names)

    async def title_of(self, chat_id: str) -> str:
        if chat_id not in self.titles:
            try:
                details = await self.conn.get_chat(chat_id)
            except PigeonError:
                return f"chat {chat_id}"
            members = {m.user_id for m in details.members} - set(self.names.names)
            self.names.names.update((await profile_names(self.client, self.conn, members)).names)
            self.titles[chat_id] = chat_title(details, self.names)
        return self.titles[chat_id]

    async def typed(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        if text == "/send" or text.startswith("/send "):
            await self.send_file(text[len("/send") :].strip())
        elif text == "/info" or text.startswith("/info "):
            await self.info(text[len("/info") :].strip().lstrip("#"))
        else:
            try:
                sent = await self.conn.send_message(self.chat_id, line)
            except (CommandError, RequestTimeout) as exc:
                self.view.notice(f"not sent: {exc.code}: {exc.message}")
                return
            except ConnectionClosed:
                terminal.say("not sent: the connection was taken over", "red")
                raise
            await self.show_sent(sent)

    async def info(self, argument: str) -> None:
        """``/info N``: who has received and read this user's message #N (default: the last)."""
        own = await self.own_messages()
        if argument and not argument.isdigit():
            self.view.notice("usage: /info N (the #number of one of your messages)")
            return
        chosen = [m for m in own if not argument or m.seq == int(argument)]
        if not chosen:
            self.view.notice(f"#{argument or '?'} is not one of your messages here")
            return
        message = chosen[-1]
        receipts = await self.store.receipts(self.chat_id)
        self.view.info(message, self.view.status.per_member(message, receipts))

    async def send_file(self, argument: str) -> None:
        """``/send PATH``: upload the file and send it."""
        if len(argument) >= 2 and argument[0] == argument[-1] and argument[0] in "'\"":
            argument = argument[1:-1]
        if not argument:
            self.view.notice("usage: /send PATH")
            return
        file, size = await asyncio.to_thread(_file_and_size, argument)
        if size is None:
            terminal.say(f"not sent: no file {file}", "red")
            return
        self.view.notice(f"uploading {file.name} ({human_size(size)})…")
        try:
            attachment = await self.client.upload_file(self.conn.session, file)
            sent = await self.conn.send_message(self.chat_id, attachments=[attachment])
        except (ApiError, CommandError, RequestTimeout, OSError) as exc:
            reason = f"{exc.code}: {exc.message}" if isinstance(exc, PigeonError) else str(exc)
            terminal.say(f"not sent: {reason}", "red")
            return
        await self.show_sent(sent)

    async def show_sent(self, sent: SentMessage) -> None:
        """Our message as the store kept it (with its files), marked ✓ sent."""
        self.shown.add(sent.message_id)
        [kept] = [m for m in await self.own_messages() if m.message_id == sent.message_id]
        self.view.message(kept)


def _file_and_size(argument: str) -> tuple[Path, int | None]:
    file = Path(argument).expanduser()
    return file, file.stat().st_size if file.is_file() else None


async def after_replaced(lines: Lines) -> bool:
    """The connection was taken over: True to take it back (/reconnect), False to leave.

    Lines typed meanwhile are answered here, not sent and not left to the shell.
    """
    terminal.say(
        "Another `pigeon chat` command of this device took over the connection. "
        "Type /reconnect to take it back, /quit to leave.",
        "yellow",
    )
    while True:
        line = await lines.next()
        if line is None or line.strip() == "/quit":
            return False
        if line.strip() == "/reconnect":
            return True
        if line.strip():
            terminal.say(
                "not sent: the connection is with another command; /reconnect or /quit", "red"
            )
