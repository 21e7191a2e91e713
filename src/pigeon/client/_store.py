"""A device's local store: every message and receipt it received, kept before it is acked.

The server deletes a queued event once the device acks it, so a client may
ack only what it has kept. ``LocalStore`` is that keeping: one SQLite file
per device session, written in a worker thread of its own (the standard
library's ``sqlite3``: the SDK needs nothing more). A ``Connection`` opened
with ``store=`` writes each message and receipt to it, in one committed
transaction per batch, *before* handing the event to the application, and
acks only events it has stored; see ``Connection.events``.

Each message row also says whether the application has finished with it
(``handled``): a message stored but not handled when the process died is
handed out again when the server sends it again; a handled one is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from pigeon.client._errors import StoreError
from pigeon.client._models import (
    Attachment,
    MessageEvent,
    ReceiptEvent,
    parse_attachment,
    parse_time,
)

__all__ = ["LocalStore", "MemberReceipts", "StoredMessage"]

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS owner (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    chat_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sender_id TEXT,
    sender_device_id TEXT,
    text TEXT NOT NULL,
    attachments TEXT NOT NULL,
    created_at TEXT NOT NULL,
    reply_to TEXT,
    system TEXT,
    handled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, message_id)
);
CREATE INDEX IF NOT EXISTS messages_by_seq ON messages (chat_id, seq);
CREATE TABLE IF NOT EXISTS receipts (
    chat_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    up_to_seq INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id, type)
);
"""
_COLUMNS = (
    "chat_id, message_id, seq, kind, sender_id, sender_device_id, text, attachments, "
    "created_at, reply_to, system"
)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as the store keeps it: received, or sent from this device.

    The same fields as :class:`MessageEvent`, without the queue position.
    """

    chat_id: str
    message_id: str
    seq: int
    kind: str
    sender_id: str | None
    sender_device_id: str | None
    text: str
    attachments: tuple[Attachment, ...]
    created_at: datetime
    reply_to: str | None = None
    system: dict[str, Any] | None = None

    @classmethod
    def of(cls, event: MessageEvent) -> StoredMessage:
        return cls(
            chat_id=event.chat_id,
            message_id=event.message_id,
            seq=event.seq,
            kind=event.kind,
            sender_id=event.sender_id,
            sender_device_id=event.sender_device_id,
            text=event.text,
            attachments=event.attachments,
            created_at=event.created_at,
            reply_to=event.reply_to,
            system=event.system,
        )


@dataclass(frozen=True, slots=True)
class MemberReceipts:
    """How far one member of a chat has received (``delivered_seq``) and read (``read_seq``).

    Read implies delivered: ``delivered_seq`` is never below ``read_seq``.
    """

    user_id: str
    delivered_seq: int
    read_seq: int


class LocalStore:
    """One device session's messages, receipts and system messages, per chat (SQLite).

    ``path`` is the database file (created with mode 0600: it holds message
    text). Pass the store to ``PigeonClient.connect(session, store=...)``;
    the connection binds it to its device on open (a store holds one
    device's history, and refuses another's with ``StoreError``
    ``store_mismatch``). Close it with :meth:`close` or ``async with``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pigeon-store")
        self._db: sqlite3.Connection | None = None  # used only on the executor's thread
        self._user_id: str | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the database (idempotent)."""
        await self._run(self._close)
        self._executor.shutdown(wait=False)

    # -- what the connection writes ------------------------------------------------------

    async def bind(self, user_id: str, device_id: str) -> None:
        """Make this the store of ``device_id`` (``store_mismatch`` if it is another's)."""
        await self._run(self._bind, user_id, device_id)
        self._user_id = user_id

    async def record(self, events: Sequence[MessageEvent | ReceiptEvent]) -> list[bool]:
        """Store ``events`` in one committed transaction; for each, whether it is news.

        A message is news unless the store has it and the application
        handled it; a receipt is news when it moves its mark forward.
        """
        return await self._run(self._record, list(events))

    async def mark_handled(self, keys: Iterable[tuple[str, str]]) -> None:
        """The application is done with these ``(chat_id, message_id)``: never hand them again."""
        rows = list(keys)
        if rows:
            await self._run(self._mark_handled, rows)

    async def record_sent(self, message: StoredMessage) -> None:
        """Keep a message this device sent (the server does not send it back to it)."""
        await self._run(self._record_sent, message)

    async def record_read_mark(self, chat_id: str, up_to_seq: int) -> None:
        """This user read ``chat_id`` up to ``up_to_seq`` (the mark only goes up)."""
        user_id = self._owner()
        await self._run(self._raise_receipt, chat_id, user_id, "read", up_to_seq)

    # -- what the application reads ------------------------------------------------------

    async def history(self, chat_id: str, limit: int = 50) -> list[StoredMessage]:
        """The chat's last ``limit`` messages, oldest first (in ``seq`` order)."""
        return await self._run(self._history, chat_id, limit)

    async def message(self, chat_id: str, message_id: str) -> StoredMessage | None:
        """One message of the chat, if the store has it (to forward it, say)."""
        return await self._run(self._message_by_id, chat_id, message_id)

    async def last_messages(self) -> dict[str, StoredMessage]:
        """The last message of every chat the store has messages of, by chat id."""
        return await self._run(self._last_messages)

    async def read_mark(self, chat_id: str) -> int:
        """How far this user has read the chat, as far as this device knows."""
        return await self._run(self._mark, chat_id, self._owner(), "read")

    async def unread(self, chat_id: str, read_seq: int = 0) -> int:
        """Messages of others (not system messages) after this user's read mark.

        The mark is the higher of ``read_seq`` (the server's, from
        ``get_chats``) and the one this device knows.
        """
        return await self._run(self._unread, chat_id, self._owner(), read_seq)

    async def receipts(self, chat_id: str) -> dict[str, MemberReceipts]:
        """Every member's delivered and read marks in the chat, by user id (this user's too)."""
        return await self._run(self._receipts, chat_id)

    # -- the worker thread -------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except sqlite3.Error as exc:
            raise StoreError("store_failed", f"{self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreError("store_failed", f"{self.path}: {exc.strerror or exc}") from exc

    def _owner(self) -> str:
        if self._user_id is None:
            raise StoreError("store_unbound", "open a Connection with this store first")
        return self._user_id

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created owner-only before SQLite opens it; its WAL files take its mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut: then we ack
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db = db
        return self._db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _bind(self, user_id: str, device_id: str) -> None:
        db = self._connection()
        row = db.execute("SELECT user_id, device_id FROM owner").fetchone()
        if row is None:
            db.execute("INSERT INTO owner VALUES (?, ?)", (user_id, device_id))
        elif tuple(row) != (user_id, device_id):
            raise StoreError(
                "store_mismatch",
                f"{self.path} holds the messages of device {row[1]}, not of {device_id}",
            )

    def _record(self, events: list[MessageEvent | ReceiptEvent]) -> list[bool]:
        db = self._connection()
        news: list[bool] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for event in events:
                if isinstance(event, MessageEvent):
                    news.append(self._insert_message(db, StoredMessage.of(event), handled=False))
                else:
                    news.append(
                        self._raise_receipt_in(
                            db, event.chat_id, event.user_id, event.type, event.up_to_seq
                        )
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return news

    def _insert_message(
        self, db: sqlite3.Connection, message: StoredMessage, handled: bool
    ) -> bool:
        inserted = db.execute(
            f"INSERT INTO messages ({_COLUMNS}, handled) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "  # noqa: S608 (constant column list)
            "ON CONFLICT (chat_id, message_id) DO NOTHING",
            (*_message_row(message), int(handled)),
        ).rowcount
        if inserted:
            return True
        row = db.execute(
            "SELECT handled FROM messages WHERE chat_id = ? AND message_id = ?",
            (message.chat_id, message.message_id),
        ).fetchone()
        return not row[0]

    def _mark_handled(self, keys: list[tuple[str, str]]) -> None:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "UPDATE messages SET handled = 1 WHERE chat_id = ? AND message_id = ?", keys
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _record_sent(self, message: StoredMessage) -> None:
        self._insert_message(self._connection(), message, handled=True)

    def _raise_receipt(self, chat_id: str, user_id: str, type_: str, up_to_seq: int) -> bool:
        return self._raise_receipt_in(self._connection(), chat_id, user_id, type_, up_to_seq)

    @staticmethod
    def _raise_receipt_in(
        db: sqlite3.Connection, chat_id: str, user_id: str, type_: str, up_to_seq: int
    ) -> bool:
        changed = db.execute(
            "INSERT INTO receipts (chat_id, user_id, type, up_to_seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (chat_id, user_id, type) DO UPDATE SET up_to_seq = excluded.up_to_seq "
            "WHERE excluded.up_to_seq > receipts.up_to_seq",
            (chat_id, user_id, type_, up_to_seq),
        ).rowcount
        return bool(changed)

    def _history(self, chat_id: str, limit: int) -> list[StoredMessage]:
        rows = self._connection().execute(
            f"SELECT {_COLUMNS} FROM messages WHERE chat_id = ? ORDER BY seq DESC LIMIT ?",  # noqa: S608
            (chat_id, limit),
        )
        return [_message(row) for row in reversed(rows.fetchall())]

    def _message_by_id(self, chat_id: str, message_id: str) -> StoredMessage | None:
        row = (
            self._connection()
            .execute(
                f"SELECT {_COLUMNS} FROM messages WHERE chat_id = ? AND message_id = ?",  # noqa: S608
                (chat_id, message_id),
            )
            .fetchone()
        )
        return None if row is None else _message(row)

    def _last_messages(self) -> dict[str, StoredMessage]:
        rows = self._connection().execute(
            f"SELECT {_COLUMNS} FROM messages AS m WHERE seq = "  # noqa: S608
            "(SELECT MAX(seq) FROM messages WHERE chat_id = m.chat_id)"
        )
        return {message.chat_id: message for message in map(_message, rows)}

    def _mark(self, chat_id: str, user_id: str, type_: str) -> int:
        row = (
            self._connection()
            .execute(
                "SELECT up_to_seq FROM receipts WHERE chat_id = ? AND user_id = ? AND type = ?",
                (chat_id, user_id, type_),
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def _unread(self, chat_id: str, user_id: str, read_seq: int) -> int:
        mark = max(read_seq, self._mark(chat_id, user_id, "read"))
        row = (
            self._connection()
            .execute(
                "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND seq > ? AND kind = 'text' "
                "AND sender_id IS NOT ?",
                (chat_id, mark, user_id),
            )
            .fetchone()
        )
        return int(row[0])

    def _receipts(self, chat_id: str) -> dict[str, MemberReceipts]:
        marks: dict[str, dict[str, int]] = {}
        rows = self._connection().execute(
            "SELECT user_id, type, up_to_seq FROM receipts WHERE chat_id = ?", (chat_id,)
        )
        for user_id, type_, seq in rows:
            marks.setdefault(user_id, {})[type_] = int(seq)
        return {
            user_id: MemberReceipts(
                user_id=user_id,
                delivered_seq=max(mark.get("delivered", 0), mark.get("read", 0)),
                read_seq=mark.get("read", 0),
            )
            for user_id, mark in marks.items()
        }


def _message_row(message: StoredMessage) -> tuple[Any, ...]:
    return (
        message.chat_id,
        message.message_id,
        message.seq,
        message.kind,
        message.sender_id,
        message.sender_device_id,
        message.text,
        json.dumps([_attachment_json(a) for a in message.attachments]),
        message.created_at.isoformat(),
        message.reply_to,
        json.dumps(message.system) if message.system is not None else None,
    )


def _attachment_json(attachment: Attachment) -> dict[str, Any]:
    return {
        "attachmentId": attachment.attachment_id,
        "mimeType": attachment.mime_type,
        "size": attachment.size,
        "fileName": attachment.file_name,
        "width": attachment.width,
        "height": attachment.height,
        "thumbnail": base64.b64encode(attachment.thumbnail).decode()
        if attachment.thumbnail
        else None,
    }


def _message(row: Sequence[Any]) -> StoredMessage:
    created_at = parse_time(row[8])
    assert created_at is not None  # the column is NOT NULL
    return StoredMessage(
        chat_id=row[0],
        message_id=row[1],
        seq=int(row[2]),
        kind=row[3],
        sender_id=row[4],
        sender_device_id=row[5],
        text=row[6],
        attachments=tuple(parse_attachment(item) for item in json.loads(row[7])),
        created_at=created_at,
        reply_to=row[9],
        system=json.loads(row[10]) if row[10] is not None else None,
    )
