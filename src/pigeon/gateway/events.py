"""Every frame the server sends: the one place where results and events become the wire.

Two halves that must agree. The pydantic models describe every frame (unknown
fields are forbidden) and ``pigeon.gateway.schema`` publishes them as JSON
Schema. The builders at the end (``queued_frame``, ``send_answer``, ...) make
those frames as plain dicts from domain objects and service results: the hot
path does not pay for validation. The tests check frames captured from a live
server against the schema, so a builder that drifts from its model fails them.

Server frames come in two shapes:

* answers to a command that had an `id`: `{"id", "ok": true, "data"}` or
  `{"id", "ok": false, "error": {"code", "message"}}`;
* events: `{"event": "<name>", "data": {...}}`. Queued events (`message`,
  `receipt`, and the changes to a message: `reaction`, `messageEdited`,
  `messageDeleted`) carry an `inboxSeq` and are sent again until acked; the
  others (`ready`, `drained`, `typing`, `presence`) are not queued.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator
from pydantic.json_schema import SkipJsonSchema

from pigeon.domain.changes import ChangeKind, MessageChange, forwarded_many_times
from pigeon.domain.chats import Chat, Member, Message
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.events import LiveEvent, PresenceChange, Receipt, StatusPosted, Typing
from pigeon.domain.media import Attachment
from pigeon.domain.push import ChatMute
from pigeon.gateway.frames import MAX_SAFE_INTEGER, EntityId, RequestId, Seq
from pigeon.services import broadcasts, presence
from pigeon.services.changes import ChangeResult
from pigeon.services.messaging import ReadResult, SendResult

Timestamp = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        description="ISO 8601 in UTC with milliseconds and a Z: 2026-01-01T12:00:00.000Z.",
    ),
]
PositiveSeq = Annotated[Seq, Field(ge=1)]
InboxSeq = Annotated[
    Seq,
    Field(
        ge=1,
        description="This device's queue position: strictly increasing; ack it cumulatively.",
    ),
]
ChatSeq = Annotated[
    Seq, Field(ge=1, description="The message's position in its chat: strictly increasing.")
]
Pixels = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]
Base64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]*={0,2}$")]
Role = Literal["admin", "member"]
ChatKind = Literal["direct", "group"]


def _omitted_when_absent(schema: dict[str, Any]) -> None:
    # The server leaves such a field out rather than sending null.
    schema.pop("default", None)


def _optional(**kwargs: Any) -> Any:
    return Field(default=None, json_schema_extra=_omitted_when_absent, **kwargs)


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- attachments -----------------------------------------------------------------


class AttachmentMetadata(Payload):
    """What a message (and the answer to `createAttachment`) tells about a file.

    Never the content's hash: that is not a capability. The bytes come from
    `GET /v1/attachments/{attachmentId}` (docs/protocol.md, "Attachments").
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"dependentRequired": {"width": ["height"], "height": ["width"]}},
    )

    attachmentId: EntityId
    mimeType: str = Field(
        min_length=1,
        max_length=127,
        description="Sniffed from the content by the server; what the client declared is ignored.",
    )
    size: int = Field(ge=0, le=MAX_SAFE_INTEGER, description="In bytes.")
    fileName: str = Field(
        min_length=1,
        max_length=255,
        description='A display name without path parts or control characters ("file" if none '
        "was given).",
    )
    width: Pixels | SkipJsonSchema[None] = _optional(
        description="Images the server could decode: the width in pixels."
    )
    height: Pixels | SkipJsonSchema[None] = _optional(description="Sent together with width.")
    thumbnail: Base64 | SkipJsonSchema[None] = _optional(
        description="A small JPEG, base64: the server's (at most 96x96) for images it could "
        "decode, or the poster the uploading client made (video, at most 16 KiB by default)."
    )

    @model_validator(mode="after")
    def _width_with_height(self) -> AttachmentMetadata:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height come together")
        return self


# -- answers -------------------------------------------------------------------


class ErrorInfo(Payload):
    code: str = Field(
        pattern=r"^[a-z_]+$",
        description="Stable and machine-readable (docs/protocol.md lists them).",
    )
    message: str = Field(description="For people; may change between versions.")


class ErrorAnswer(Payload):
    """A command failed. `id` is null when the frame was not readable enough to have one."""

    id: RequestId | None
    ok: Literal[False]
    error: ErrorInfo


class AuthResult(Payload):
    userId: EntityId
    deviceId: EntityId


class PingResult(Payload):
    pong: Literal[True]


class CreateChatResult(Payload):
    chatId: EntityId
    created: bool = Field(description="False when the 1:1 chat already existed.")


class StatusResult(Payload):
    status: Literal["SUCCESS"]


class SendMessageResult(Payload):
    status: Literal["SUCCESS"]
    messageId: EntityId
    seq: ChatSeq
    createdAt: Timestamp
    duplicate: bool = Field(
        description="True when this device already sent this clientMessageId: nothing new "
        "was stored or delivered, and the fields are those of the first send."
    )


class BroadcastCopy(Payload):
    userId: EntityId = Field(description="The recipient.")
    chatId: EntityId = Field(description="The 1:1 chat of the sender and the recipient.")
    messageId: EntityId
    seq: ChatSeq
    duplicate: bool


class BroadcastResult(Payload):
    listId: EntityId
    delivered: int = Field(ge=0, description="Recipients the message was queued for.")
    skipped: int = Field(
        ge=0, description="Recipients who do not have the sender among their contacts."
    )
    createdAt: Timestamp | None = Field(description="When the copies were stored; null if none.")
    messages: list[BroadcastCopy] = Field(description="One 1:1 message per recipient reached.")


class AckResult(Payload):
    upTo: Seq


class MarkReadResult(Payload):
    upToSeq: Seq = Field(description="The read mark asked for, clamped to the chat's last seq.")


class ChatSummary(Payload):
    chatId: EntityId
    kind: ChatKind
    name: str = Field(description="Empty for 1:1 chats.")
    role: Role
    lastSeq: Seq
    readSeq: Seq = Field(description="The caller's own read mark in this chat.")


class GetChatsResult(Payload):
    chats: list[ChatSummary]


class ChatMember(Payload):
    userId: EntityId
    role: Role
    joinedAt: Timestamp
    readSeq: Seq


class GetChatResult(Payload):
    chatId: EntityId
    kind: ChatKind
    name: str = Field(description="Empty for 1:1 chats.")
    createdBy: EntityId | None = Field(description="Null once the creator deleted their account.")
    createdAt: Timestamp
    lastSeq: Seq
    members: list[ChatMember] = Field(description="Oldest member first.")
    disappearingSeconds: Literal[86400, 604800, 7776000] | SkipJsonSchema[None] = _optional(
        description="Only while messages disappear: the timer (`setDisappearing`)."
    )


class SetPresenceResult(Payload):
    state: Literal["online", "offline"]


class UserPresence(Payload):
    userId: EntityId
    state: Literal["online", "offline"]
    lastSeen: Timestamp | None = Field(description="Null while online or if never seen.")


class GetPresenceResult(Payload):
    presence: list[UserPresence] = Field(
        description="Only the asked users who share a chat with the caller; the others are "
        "left out without an error."
    )


class _OkAnswer(Payload):
    id: RequestId
    ok: Literal[True]


class AuthAnswer(_OkAnswer):
    """Answer to `auth` (sent before the `ready` event)."""

    data: AuthResult


class PingAnswer(_OkAnswer):
    """Answer to `ping`."""

    data: PingResult


class CreateChatAnswer(_OkAnswer):
    """Answer to `createChat`."""

    data: CreateChatResult


class StatusAnswer(_OkAnswer):
    """Answer to `modifyChatParticipants`, `setRole`, `updateChat` and `setDisappearing`."""

    data: StatusResult


class SendMessageAnswer(_OkAnswer):
    """Answer to `sendMessage`: sent only once the message is durably committed.

    A send to a broadcast list (`listId`) is answered with the list's counts.
    """

    data: SendMessageResult | BroadcastResult


class AckAnswer(_OkAnswer):
    """Answer to an `ack` that had an id (acks are usually sent without one).

    `upTo` is the highest inboxSeq acked on this connection so far: the one
    asked for, or a higher one when an earlier ack already covered it.
    """

    data: AckResult


class MarkReadAnswer(_OkAnswer):
    """Answer to `markRead`."""

    data: MarkReadResult


class TypingAnswer(_OkAnswer):
    """Answer to `typing` (usually sent without an id)."""

    data: None


class GetChatsAnswer(_OkAnswer):
    """Answer to `getChats`: every chat the caller is a member of."""

    data: GetChatsResult


class GetChatAnswer(_OkAnswer):
    """Answer to `getChat`."""

    data: GetChatResult


class SetPresenceAnswer(_OkAnswer):
    """Answer to `setPresence`."""

    data: SetPresenceResult


class GetPresenceAnswer(_OkAnswer):
    """Answer to `getPresence`."""

    data: GetPresenceResult


class CreateAttachmentAnswer(_OkAnswer):
    """Answer to `createAttachment`: the stored file, ready to be sent in `sendMessage`."""

    data: AttachmentMetadata


class ChangeMessageResult(Payload):
    status: Literal["SUCCESS"]
    at: Timestamp = Field(description="When the change was made: the `at` the others are told.")


class ChangeMessageAnswer(_OkAnswer):
    """Answer to `react`, `editMessage` and `deleteMessage`: the change is committed and
    queued for every other device of the chat."""

    data: ChangeMessageResult


class MuteChatResult(Payload):
    chatId: EntityId
    muted: bool
    mutedUntil: Timestamp | None = Field(
        description="When the mute ends; null when muted always, or not muted."
    )


class MuteChatAnswer(_OkAnswer):
    """Answer to `muteChat`. My other devices see it in `GET /v1/me/notifications`."""

    data: MuteChatResult


# What each command is answered with when it succeeds (keys: frames.COMMANDS).
ANSWERS: dict[str, type[BaseModel]] = {
    "auth": AuthAnswer,
    "ping": PingAnswer,
    "createChat": CreateChatAnswer,
    "modifyChatParticipants": StatusAnswer,
    "setRole": StatusAnswer,
    "updateChat": StatusAnswer,
    "sendMessage": SendMessageAnswer,
    "ack": AckAnswer,
    "markRead": MarkReadAnswer,
    "typing": TypingAnswer,
    "getChats": GetChatsAnswer,
    "getChat": GetChatAnswer,
    "setPresence": SetPresenceAnswer,
    "getPresence": GetPresenceAnswer,
    "createAttachment": CreateAttachmentAnswer,
    "react": ChangeMessageAnswer,
    "editMessage": ChangeMessageAnswer,
    "deleteMessage": ChangeMessageAnswer,
    "setDisappearing": StatusAnswer,
    "muteChat": MuteChatAnswer,
}


# -- events ----------------------------------------------------------------------


class ReadyEventData(Payload):
    userId: EntityId
    deviceId: EntityId


class ReadyEvent(Payload):
    """The connection is authenticated; queued events follow."""

    event: Literal["ready"]
    data: ReadyEventData


class SystemCreated(Payload):
    """The group was created."""

    action: Literal["created"]
    actorId: EntityId
    name: str = Field(description="Empty when the group was created without a name.")
    members: list[EntityId] = Field(description="The creator first.")


class SystemAdded(Payload):
    """An admin added `userId`."""

    action: Literal["added"]
    actorId: EntityId
    userId: EntityId


class SystemRemoved(Payload):
    """An admin removed `userId` (who gets this message too)."""

    action: Literal["removed"]
    actorId: EntityId
    userId: EntityId


class SystemLeft(Payload):
    """`userId` left the group (their devices get this message too)."""

    action: Literal["left"]
    actorId: EntityId
    userId: EntityId


class SystemRole(Payload):
    """`userId` now has `role`. `actorId` is null when the server promoted the
    longest-standing member because the last admin left."""

    action: Literal["role"]
    actorId: EntityId | None
    userId: EntityId
    role: Role


class SystemRenamed(Payload):
    """An admin renamed the group."""

    action: Literal["renamed"]
    actorId: EntityId
    name: str


class SystemDisappearing(Payload):
    """A member (of a 1:1 chat) or an admin (of a group) set the disappearing timer:
    messages sent from now on disappear `seconds` after they were sent (0: off)."""

    action: Literal["disappearing"]
    actorId: EntityId
    seconds: Literal[0, 86400, 604800, 7776000]


SystemInfo = Annotated[
    Union[  # noqa: UP007
        SystemCreated,
        SystemAdded,
        SystemRemoved,
        SystemLeft,
        SystemRole,
        SystemRenamed,
        SystemDisappearing,
    ],
    Field(discriminator="action"),
]


class Forwarded(Payload):
    hops: int = Field(ge=1, description="How many times it was forwarded to get here.")
    manyTimes: bool = Field(
        description='Forwarded 5 times or more: show "Forwarded many times"; it may be '
        "forwarded to one chat at a time."
    )


class Quote(Payload):
    senderId: EntityId | None = Field(
        description="Who sent the quoted message (null when the server no longer knows)."
    )
    excerpt: str = Field(
        description="The start of the quoted text, as the replier's client gave it."
    )


class TextMessageData(Payload):
    """A message a member sent."""

    chatId: EntityId
    messageId: EntityId
    seq: ChatSeq
    kind: Literal["text"]
    senderId: EntityId
    senderDeviceId: EntityId
    message: str = Field(description="The text; may be empty when there are attachments.")
    attachments: list[AttachmentMetadata] = Field(
        max_length=10,
        description="The files sent with the message, in the order given, duplicates removed. "
        "Download them before acking: media is deleted once every recipient device acked.",
    )
    createdAt: Timestamp
    inboxSeq: InboxSeq
    replyTo: EntityId | SkipJsonSchema[None] = _optional(
        description="The messageId this message answers, as the sender gave it (not checked)."
    )
    quote: Quote | SkipJsonSchema[None] = _optional(
        description="A reply sent with its quote: enough to show it when the quoted message "
        "is gone."
    )
    forwarded: Forwarded | SkipJsonSchema[None] = _optional(
        description="Present when the message was forwarded."
    )
    expiresAt: Timestamp | SkipJsonSchema[None] = _optional(
        description="Sent while the chat's disappearing timer was on: delete it then. The "
        "server deletes its copies at that time."
    )
    mentions: list[EntityId] | SkipJsonSchema[None] = _optional(
        description="User ids the sender mentioned (each a member when sent); absent: none."
    )


class SystemMessageData(Payload):
    """A change to a group, written by the server in the same transaction as the change."""

    chatId: EntityId
    messageId: EntityId
    seq: ChatSeq
    kind: Literal["system"]
    senderId: None
    senderDeviceId: None
    message: Literal[""]
    attachments: Annotated[list[AttachmentMetadata], Field(max_length=0)]
    createdAt: Timestamp
    inboxSeq: InboxSeq
    system: SystemInfo


class MessageEvent(Payload):
    """A message in one of the device's chats (queued: ack its `inboxSeq`)."""

    event: Literal["message"]
    data: Annotated[Union[TextMessageData, SystemMessageData], Field(discriminator="kind")]  # noqa: UP007


class ReceiptEventData(Payload):
    chatId: EntityId
    type: Literal["delivered", "read"] = Field(
        description="delivered: a device of userId acked the messages (told to the sender's "
        "devices); read: userId marked them read (told to the devices of the senders of the "
        "messages covered, and to userId's other devices)."
    )
    userId: EntityId = Field(description="Who received or read.")
    upToSeq: Seq = Field(description="Every message of the chat up to this seq.")
    at: Timestamp
    inboxSeq: InboxSeq


class ReceiptEvent(Payload):
    """Messages were delivered or read (queued: ack its `inboxSeq`)."""

    event: Literal["receipt"]
    data: ReceiptEventData


class StatusEventData(Payload):
    statusId: EntityId
    authorId: EntityId = Field(description="A contact whose status privacy shows it to you.")
    createdAt: Timestamp
    expiresAt: Timestamp = Field(description="By the server's clock; gone after that.")
    inboxSeq: InboxSeq


class StatusEvent(Payload):
    """A contact posted a status (queued until it expires: ack its `inboxSeq`). Read it
    with `GET /v1/statuses`."""

    event: Literal["status"]
    data: StatusEventData


class DrainedEventData(Payload):
    inboxSeq: Seq = Field(description="The last queued event sent; 0 if there was none.")


class DrainedEvent(Payload):
    """Everything queued when the connection opened has been sent (once per connection)."""

    event: Literal["drained"]
    data: DrainedEventData


class TypingEventData(Payload):
    chatId: EntityId
    userId: EntityId
    state: Literal["composing", "paused"]


class TypingEvent(Payload):
    """Someone in a shared chat is typing (not queued: live connections only)."""

    event: Literal["typing"]
    data: TypingEventData


class PresenceEventData(Payload):
    userId: EntityId
    state: Literal["online", "offline"]
    lastSeen: Timestamp | None = Field(description="Null when online.")


class PresenceEvent(Payload):
    """Someone who shares a chat came online or went away (not queued)."""

    event: Literal["presence"]
    data: PresenceEventData


class ReactionEventData(Payload):
    chatId: EntityId
    messageId: EntityId
    userId: EntityId = Field(description="Who reacted.")
    emoji: str = Field(
        max_length=64,
        description="userId's reaction, replacing any earlier one; empty: it was removed.",
    )
    at: Timestamp
    inboxSeq: InboxSeq


class ReactionEvent(Payload):
    """Someone reacted to a message (queued: ack its `inboxSeq`)."""

    event: Literal["reaction"]
    data: ReactionEventData


class MessageEditedEventData(Payload):
    chatId: EntityId
    messageId: EntityId
    userId: EntityId = Field(description="The sender, who edited it.")
    message: str = Field(description="The new text, in full; the old one is not kept.")
    at: Timestamp = Field(description="When it was edited.")
    inboxSeq: InboxSeq


class MessageEditedEvent(Payload):
    """The sender edited a text message (queued: ack its `inboxSeq`)."""

    event: Literal["messageEdited"]
    data: MessageEditedEventData


class MessageDeletedEventData(Payload):
    chatId: EntityId
    messageId: EntityId
    userId: EntityId = Field(description="Who deleted it: the sender or a group admin.")
    at: Timestamp
    inboxSeq: InboxSeq


class MessageDeletedEvent(Payload):
    """A message was deleted for everyone: delete it (queued: ack its `inboxSeq`)."""

    event: Literal["messageDeleted"]
    data: MessageDeletedEventData


EVENTS: dict[str, type[BaseModel]] = {
    "ready": ReadyEvent,
    "message": MessageEvent,
    "receipt": ReceiptEvent,
    "drained": DrainedEvent,
    "typing": TypingEvent,
    "presence": PresenceEvent,
    "reaction": ReactionEvent,
    "messageEdited": MessageEditedEvent,
    "messageDeleted": MessageDeletedEvent,
    "status": StatusEvent,
}

_answers = tuple(dict.fromkeys(ANSWERS.values()))


class ServerEvent(RootModel[Any]):
    """An event: `{"event": "<name>", "data": {...}}`."""

    root: Annotated[Union[tuple(EVENTS.values())], Field(discriminator="event")]  # type: ignore[valid-type]  # noqa: UP007


class Answer(RootModel[Any]):
    """The answer to a command that had an `id`: `ok` true with `data`, or false with
    `error`. A command without an `id` gets no answer unless it fails."""

    root: Union[(*_answers, ErrorAnswer)]  # type: ignore[valid-type]


class ServerFrame(RootModel[Any]):
    """Any frame the server sends: an answer or an event."""

    root: Answer | ServerEvent


# -- building frames ----------------------------------------------------------------
# Plain dicts, exactly as the models above describe them.


def encode(frame: dict[str, Any]) -> str:
    """The frame as compact JSON text (orjson: the stdlib's encoder was 16 % of the samples
    at saturation, docs/performance.md)."""
    try:
        return orjson.dumps(frame).decode()
    except orjson.JSONEncodeError:
        # Text orjson refuses (a lone surrogate from an older row, say) goes out
        # escaped rather than failing the frame.
        return json.dumps(frame, separators=(",", ":"))


@functools.lru_cache(maxsize=256)  # a batch's messages and receipts share one time
def timestamp(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: what clients sort and show."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def answer(request_id: Any, data: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "data": data}


def error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


# A message's data is the same for every device it goes to (only inboxSeq
# differs): made once, kept while the fan-out to its devices runs. An edit
# changes a queued message's text, so an entry is used only while its text
# is the message's; the cache only has to stay small.
_MESSAGE_DATA: dict[str, dict[str, Any]] = {}
_MESSAGE_DATA_MAX = 1024


def message_data(message: Message) -> dict[str, Any]:
    data = _MESSAGE_DATA.get(message.id)
    if data is not None and data["message"] == message.body:
        return data
    data = {
        "chatId": message.chat_id,
        "messageId": message.id,
        "seq": message.seq,
        "kind": message.kind.value,
        "senderId": message.sender_id,
        "senderDeviceId": message.sender_device_id,
        "message": message.body,
        "attachments": message.attachments,
        "createdAt": timestamp(message.created_at),
    }
    if message.reply_to is not None:
        data["replyTo"] = message.reply_to
    if message.system is not None:
        data["system"] = message.system
    if message.quote is not None:
        data["quote"] = message.quote
    if message.forward_hops:
        hops = message.forward_hops
        data["forwarded"] = {"hops": hops, "manyTimes": forwarded_many_times(hops)}
    if message.expires_at is not None:
        data["expiresAt"] = timestamp(message.expires_at)
    if message.mentions:
        data["mentions"] = message.mentions
    if len(_MESSAGE_DATA) >= _MESSAGE_DATA_MAX:
        _MESSAGE_DATA.clear()
    _MESSAGE_DATA[message.id] = data
    return data


def receipt_data(receipt: Receipt) -> dict[str, Any]:
    return {
        "chatId": receipt.chat_id,
        "type": receipt.type.value,
        "userId": receipt.user_id,
        "upToSeq": receipt.up_to_seq,
        "at": timestamp(receipt.at),
    }


_CHANGE_EVENTS = {
    ChangeKind.REACTION: "reaction",
    ChangeKind.EDITED: "messageEdited",
    ChangeKind.DELETED: "messageDeleted",
}


def change_frame(change: MessageChange, inbox_seq: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "chatId": change.chat_id,
        "messageId": change.message_id,
        "userId": change.user_id,
    }
    if change.kind is ChangeKind.REACTION:
        data["emoji"] = change.emoji
    elif change.kind is ChangeKind.EDITED:
        data["message"] = change.text
    data["at"] = timestamp(change.at)
    data["inboxSeq"] = inbox_seq
    return {"event": _CHANGE_EVENTS[change.kind], "data": data}


def queued_frame(entry: InboxEntry) -> dict[str, Any]:
    """A queue entry as its ``message``, ``receipt``, change or ``status`` event."""
    if entry.message is not None:
        return {"event": "message", "data": {**message_data(entry.message), "inboxSeq": entry.seq}}
    event = entry.event
    assert event is not None
    if isinstance(event, MessageChange):
        return change_frame(event, entry.seq)
    if isinstance(event, StatusPosted):
        return {"event": "status", "data": {**status_posted_data(event), "inboxSeq": entry.seq}}
    return {"event": "receipt", "data": {**receipt_data(event), "inboxSeq": entry.seq}}


def status_posted_data(event: StatusPosted) -> dict[str, Any]:
    return {
        "statusId": event.status_id,
        "authorId": event.author_id,
        "createdAt": timestamp(event.created_at),
        "expiresAt": timestamp(event.expires_at),
    }


def live_frame(event: LiveEvent) -> dict[str, Any]:
    """A ``typing`` or ``presence`` event."""
    if isinstance(event, Typing):
        state = "composing" if event.composing else "paused"
        return {
            "event": "typing",
            "data": {"chatId": event.chat_id, "userId": event.user_id, "state": state},
        }
    assert isinstance(event, PresenceChange)
    return {
        "event": "presence",
        "data": {
            "userId": event.user_id,
            "state": "online" if event.online else "offline",
            "lastSeen": timestamp(event.last_seen) if event.last_seen else None,
        },
    }


def ready_frame(user_id: str, device_id: str) -> dict[str, Any]:
    return {"event": "ready", "data": {"userId": user_id, "deviceId": device_id}}


def drained_frame(last_sent: int) -> dict[str, Any]:
    return {"event": "drained", "data": {"inboxSeq": last_sent}}


# -- answers' data, one builder per kind of result ---------------------------------


def status_data(_: None) -> dict[str, Any]:
    return {"status": "SUCCESS"}


def pong_data(_: None) -> dict[str, Any]:
    return {"pong": True}


def nothing(_: None) -> None:
    return None


def send_data(result: SendResult | broadcasts.BroadcastResult) -> dict[str, Any]:
    if isinstance(result, broadcasts.BroadcastResult):
        return broadcast_data(result)
    return {
        "status": "SUCCESS",
        "messageId": result.message_id,
        "seq": result.seq,
        "createdAt": timestamp(result.created_at),
        "duplicate": result.duplicate,
    }


def broadcast_data(result: broadcasts.BroadcastResult) -> dict[str, Any]:
    first = min((d.result.created_at for d in result.delivered), default=None)
    return {
        "listId": result.list_id,
        "delivered": len(result.delivered),
        "skipped": result.skipped,
        "createdAt": timestamp(first) if first else None,
        "messages": [
            {
                "userId": d.user_id,
                "chatId": d.result.chat_id,
                "messageId": d.result.message_id,
                "seq": d.result.seq,
                "duplicate": d.result.duplicate,
            }
            for d in result.delivered
        ],
    }


def ack_data(up_to: int) -> dict[str, Any]:
    return {"upTo": up_to}


def read_data(result: ReadResult) -> dict[str, Any]:
    return {"upToSeq": result.up_to_seq}


def created_chat_data(result: tuple[str, bool]) -> dict[str, Any]:
    chat_id, created = result
    return {"chatId": chat_id, "created": created}


def chats_data(memberships: Sequence[tuple[Chat, Member]]) -> dict[str, Any]:
    return {
        "chats": [
            {
                "chatId": chat.id,
                "kind": chat.kind.value,
                "name": chat.name,
                "role": member.role.value,
                "lastSeq": chat.last_seq,
                "readSeq": member.read_seq,
            }
            for chat, member in memberships
        ]
    }


def chat_data(result: tuple[Chat, Sequence[Member]]) -> dict[str, Any]:
    chat, members = result
    data = {
        "chatId": chat.id,
        "kind": chat.kind.value,
        "name": chat.name,
        "createdBy": chat.created_by or None,  # empty once the creator's account is deleted
        "createdAt": timestamp(chat.created_at),
        "lastSeq": chat.last_seq,
        "members": [
            {
                "userId": m.user_id,
                "role": m.role.value,
                "joinedAt": timestamp(m.joined_at),
                "readSeq": m.read_seq,
            }
            for m in members
        ],
    }
    if chat.disappear_seconds:
        data["disappearingSeconds"] = chat.disappear_seconds
    return data


def presence_state_data(online: bool) -> dict[str, Any]:
    return {"state": "online" if online else "offline"}


def presence_data(result: Sequence[presence.UserPresence]) -> dict[str, Any]:
    return {
        "presence": [
            {
                "userId": p.user_id,
                "state": "online" if p.online else "offline",
                "lastSeen": timestamp(p.last_seen) if p.last_seen else None,
            }
            for p in result
        ]
    }


def attachment_data(attachment: Attachment) -> dict[str, Any]:
    return attachment.metadata()


def change_data(result: ChangeResult) -> dict[str, Any]:
    return {"status": "SUCCESS", "at": timestamp(result.at)}


def mute_data(result: tuple[str, ChatMute | None]) -> dict[str, Any]:
    chat_id, mute = result
    until = mute.muted_until if mute is not None else None
    return {
        "chatId": chat_id,
        "muted": mute is not None,
        "mutedUntil": timestamp(until) if until is not None else None,
    }
