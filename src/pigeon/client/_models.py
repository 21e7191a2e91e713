"""What the SDK hands to the application: sessions, answers and events (frozen dataclasses)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "Attachment",
    "ChatDetails",
    "ChatMember",
    "ChatSummary",
    "CodeSent",
    "CreatedChat",
    "DrainedEvent",
    "Event",
    "MessageEvent",
    "Presence",
    "PresenceEvent",
    "Profile",
    "ReceiptEvent",
    "SentMessage",
    "Session",
    "TypingEvent",
    "UploadStatus",
    "parse_attachment",
    "parse_event",
    "parse_time",
]


def parse_time(value: Any) -> datetime | None:
    """The server's ISO 8601 UTC timestamps (``...Z``) as aware datetimes; None stays None."""
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _time(value: Any) -> datetime:
    moment = parse_time(value)
    if moment is None:
        raise ValueError("a timestamp is missing")
    return moment


# -- registration ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Session:
    """One registered device: its ids and tokens. Keep it secret (it is a login)."""

    user_id: str
    device_id: str
    access_token: str
    refresh_token: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        return cls(
            user_id=str(data["user_id"]),
            device_id=str(data["device_id"]),
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
        )

    def __repr__(self) -> str:  # tokens are credentials: keep them out of logs
        return f"Session(user_id={self.user_id!r}, device_id={self.device_id!r})"


@dataclass(frozen=True, slots=True)
class CodeSent:
    """A verification code is on its way to ``phone`` (normalised); valid ``expires_in`` s."""

    phone: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class Profile:
    """A user's public profile."""

    user_id: str
    name: str
    about: str


@dataclass(frozen=True, slots=True)
class Contact:
    """A user in your contacts (or found by a lookup), as their privacy lets you see them."""

    user_id: str
    phone: str
    name: str
    about: str


@dataclass(frozen=True, slots=True)
class ContactMatch:
    """A looked-up number (``input``, as sent) that belongs to ``contact``."""

    input: str
    contact: Contact


@dataclass(frozen=True, slots=True)
class ContactLookup:
    """The numbers that belong to users, and how many could not be read as numbers."""

    matches: list[ContactMatch]
    skipped: int


# -- command answers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentMessage:
    """The server stored the message: its id and its place (``seq``) in the chat."""

    chat_id: str
    message_id: str
    seq: int
    created_at: datetime
    client_message_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class BroadcastList:
    """One of this user's broadcast lists (only its owner sees it)."""

    list_id: str
    name: str
    recipients: list[str]  # user ids


@dataclass(frozen=True, slots=True)
class BroadcastSent:
    """A send to a broadcast list: one 1:1 message per recipient who has the sender as a
    contact (``messages``); ``skipped`` recipients do not have the sender."""

    list_id: str
    messages: list[SentMessage]
    skipped: int


def broadcast_list(data: dict[str, Any]) -> BroadcastList:
    return BroadcastList(
        list_id=str(data["id"]),
        name=str(data.get("name", "")),
        recipients=[str(user_id) for user_id in data.get("recipients", [])],
    )


@dataclass(frozen=True, slots=True)
class CreatedChat:
    chat_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class ChatSummary:
    """One chat of ``get_chats``.

    ``last_seq`` is the chat's last message, ``read_seq`` this user's read
    mark. Their difference is *not* the unread count: it includes this user's
    own messages and system messages. ``unread`` counts only others'
    messages after the read mark; it needs the messages themselves, so it is
    None unless the connection has a ``LocalStore``.
    """

    chat_id: str
    kind: Literal["direct", "group"]
    name: str
    role: str
    last_seq: int
    read_seq: int
    unread: int | None = None


@dataclass(frozen=True, slots=True)
class ChatMember:
    user_id: str
    role: str
    joined_at: datetime
    read_seq: int


@dataclass(frozen=True, slots=True)
class ChatDetails:
    chat_id: str
    kind: Literal["direct", "group"]
    name: str
    created_by: str | None
    created_at: datetime
    last_seq: int
    members: tuple[ChatMember, ...]


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    state: Literal["online", "offline"]
    last_seen: datetime | None


# -- attachments -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on the server: what ``upload_file`` returns and what messages carry.

    ``mime_type`` is what the server sniffed from the content (the name's
    extension is not trusted). Images the server could decode also have their
    displayed ``width`` and ``height`` in pixels and a small JPEG ``thumbnail``
    (at most 96x96, the bytes, not base64). The bytes of the file itself come
    from ``PigeonClient.download_attachment``.
    """

    attachment_id: str
    mime_type: str
    size: int
    file_name: str
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")

    @property
    def is_document(self) -> bool:
        """Not an image, video or audio: a file to save and open, not to show inline."""
        return not self.mime_type.startswith(("image/", "video/", "audio/"))


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """A resumable upload in progress: the server has ``offset`` of ``size`` bytes."""

    upload_id: str
    size: int
    offset: int
    expires_at: datetime


def parse_attachment(data: dict[str, Any]) -> Attachment:
    """The SDK's :class:`Attachment` for the server's metadata object."""
    thumbnail = data.get("thumbnail")
    try:
        picture = base64.b64decode(thumbnail, validate=True) if thumbnail else None
    except (binascii.Error, TypeError, ValueError):
        picture = None  # a thumbnail is a nicety: a bad one must not hide the file
    width, height = data.get("width"), data.get("height")
    return Attachment(
        attachment_id=str(data["attachmentId"]),
        mime_type=str(data.get("mimeType") or "application/octet-stream"),
        size=int(data["size"]),
        file_name=str(data.get("fileName") or "file"),
        width=int(width) if width is not None else None,
        height=int(height) if height is not None else None,
        thumbnail=picture,
    )


def upload_status(data: dict[str, Any]) -> UploadStatus:
    return UploadStatus(
        upload_id=str(data["uploadId"]),
        size=int(data["size"]),
        offset=int(data["offset"]),
        expires_at=_time(data["expiresAt"]),
    )


# -- events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A message in a chat (``kind`` ``text``, or ``system`` for group changes).

    ``seq`` increases strictly within a chat; ``system`` describes a group change
    (``{"action": "created"|"added"|"removed"|"left"|"role"|"renamed", ...}``).
    ``attachments`` describe the files sent with it; download them (with
    ``PigeonClient.download_attachment``) before asking ``events()`` for the
    next event: once every recipient device has acked the message, the server
    deletes the files.
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
    inbox_seq: int
    reply_to: str | None = None
    system: dict[str, Any] | None = None
    # A reply sent with its quote: who sent the quoted message, and its start.
    quote_sender_id: str | None = None
    quote_excerpt: str | None = None
    # Forwards: how many hops, and whether to show "Forwarded many times".
    forward_hops: int = 0
    forwarded_many_times: bool = False
    # Sent while the chat's disappearing timer was on: delete it then.
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReceiptEvent:
    """``user_id`` received (``delivered``) or read (``read``) the chat up to ``up_to_seq``."""

    chat_id: str
    type: Literal["delivered", "read"]
    user_id: str
    up_to_seq: int
    at: datetime
    inbox_seq: int


@dataclass(frozen=True, slots=True)
class TypingEvent:
    """Ephemeral: ``user_id`` is typing (``composing``) or stopped (``paused``)."""

    chat_id: str
    user_id: str
    state: Literal["composing", "paused"]


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """Ephemeral: a contact came online or went away."""

    user_id: str
    state: Literal["online", "offline"]
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class DrainedEvent:
    """Once per (re)connection: everything queued for this device has been received."""

    inbox_seq: int


@dataclass(frozen=True, slots=True)
class ReactionEvent:
    """``user_id`` reacted to a message with ``emoji``, replacing any earlier reaction of
    theirs; an empty ``emoji`` removes it. The latest one per user is their reaction."""

    chat_id: str
    message_id: str
    user_id: str
    emoji: str
    at: datetime
    inbox_seq: int


@dataclass(frozen=True, slots=True)
class MessageEditedEvent:
    """The sender (``user_id``) edited a text message: ``text`` replaces the old text."""

    chat_id: str
    message_id: str
    user_id: str
    text: str
    at: datetime
    inbox_seq: int


@dataclass(frozen=True, slots=True)
class MessageDeletedEvent:
    """The message was deleted for everyone by its sender or a group admin (``user_id``).

    Delete it, and its files, from the device. It may name a message this
    device never received: the server removed it from the device's queue.
    """

    chat_id: str
    message_id: str
    user_id: str
    at: datetime
    inbox_seq: int


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """Queued: a contact posted a status you may see (read it with ``GET /v1/statuses``)."""

    status_id: str
    author_id: str
    created_at: datetime
    expires_at: datetime
    inbox_seq: int


Event = (
    MessageEvent
    | ReceiptEvent
    | TypingEvent
    | PresenceEvent
    | DrainedEvent
    | ReactionEvent
    | MessageEditedEvent
    | MessageDeletedEvent
    | StatusEvent
)


def parse_event(name: str, data: dict[str, Any]) -> Event | None:
    """The typed event for a server frame; None for an event this SDK does not know."""
    if name == "message":
        return MessageEvent(
            chat_id=data["chatId"],
            message_id=data["messageId"],
            seq=int(data["seq"]),
            kind=data.get("kind", "text"),
            sender_id=data.get("senderId"),
            sender_device_id=data.get("senderDeviceId"),
            text=data.get("message", ""),
            attachments=tuple(
                parse_attachment(item)
                for item in data.get("attachments") or ()
                if isinstance(item, dict)
            ),
            created_at=_time(data["createdAt"]),
            inbox_seq=int(data["inboxSeq"]),
            reply_to=data.get("replyTo"),
            system=data.get("system"),
            quote_sender_id=(data.get("quote") or {}).get("senderId"),
            quote_excerpt=(data.get("quote") or {}).get("excerpt"),
            forward_hops=int((data.get("forwarded") or {}).get("hops", 0)),
            forwarded_many_times=bool((data.get("forwarded") or {}).get("manyTimes", False)),
            expires_at=parse_time(data.get("expiresAt")),
        )
    if name == "receipt":
        return ReceiptEvent(
            chat_id=data["chatId"],
            type=data["type"],
            user_id=data["userId"],
            up_to_seq=int(data["upToSeq"]),
            at=_time(data["at"]),
            inbox_seq=int(data["inboxSeq"]),
        )
    if name == "typing":
        return TypingEvent(chat_id=data["chatId"], user_id=data["userId"], state=data["state"])
    if name == "presence":
        return PresenceEvent(
            user_id=data["userId"], state=data["state"], last_seen=parse_time(data.get("lastSeen"))
        )
    if name == "drained":
        return DrainedEvent(inbox_seq=int(data["inboxSeq"]))
    if name == "reaction":
        return ReactionEvent(
            chat_id=data["chatId"],
            message_id=data["messageId"],
            user_id=data["userId"],
            emoji=data.get("emoji", ""),
            at=_time(data["at"]),
            inbox_seq=int(data["inboxSeq"]),
        )
    if name == "messageEdited":
        return MessageEditedEvent(
            chat_id=data["chatId"],
            message_id=data["messageId"],
            user_id=data["userId"],
            text=data.get("message", ""),
            at=_time(data["at"]),
            inbox_seq=int(data["inboxSeq"]),
        )
    if name == "messageDeleted":
        return MessageDeletedEvent(
            chat_id=data["chatId"],
            message_id=data["messageId"],
            user_id=data["userId"],
            at=_time(data["at"]),
            inbox_seq=int(data["inboxSeq"]),
        )
    if name == "status":
        return StatusEvent(
            status_id=data["statusId"],
            author_id=data["authorId"],
            created_at=_time(data["createdAt"]),
            expires_at=_time(data["expiresAt"]),
            inbox_seq=int(data["inboxSeq"]),
        )
    return None


def chat_summary(data: dict[str, Any]) -> ChatSummary:
    return ChatSummary(
        chat_id=data["chatId"],
        kind=data["kind"],
        name=data.get("name") or "",
        role=data.get("role", "member"),
        last_seq=int(data.get("lastSeq", 0)),
        read_seq=int(data.get("readSeq", 0)),
    )


def chat_details(data: dict[str, Any]) -> ChatDetails:
    return ChatDetails(
        chat_id=data["chatId"],
        kind=data["kind"],
        name=data.get("name") or "",
        created_by=data.get("createdBy"),
        created_at=_time(data["createdAt"]),
        last_seq=int(data.get("lastSeq", 0)),
        members=tuple(
            ChatMember(
                user_id=m["userId"],
                role=m["role"],
                joined_at=_time(m["joinedAt"]),
                read_seq=int(m.get("readSeq", 0)),
            )
            for m in data.get("members", ())
        ),
    )


def presence(data: dict[str, Any]) -> Presence:
    return Presence(
        user_id=data["userId"], state=data["state"], last_seen=parse_time(data.get("lastSeen"))
    )
