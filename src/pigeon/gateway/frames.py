"""Every frame a client may send, as pydantic models (a union tagged by ``type``).

``docs/protocol.md`` describes them; ``pigeon.gateway.schema`` publishes them
as JSON Schema, generated from these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)

from pigeon.domain.chats import GROUP_NAME_MAX_LENGTH

MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer JavaScript clients hold exactly


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no human text needs it.
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
EntityId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")]
RequestId = Annotated[str, Field(max_length=64)] | Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]
Seq = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]


class Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Empty(Data):
    pass


class AuthData(Data):
    token: str = Field(min_length=1, max_length=256)


class CreateChatData(Data):
    participants: list[EntityId] = Field(min_length=1, max_length=1000)
    name: Annotated[Text, Field(max_length=GROUP_NAME_MAX_LENGTH)] | None = None


class ModifyChatParticipantsData(Data):
    chatId: EntityId
    userId: EntityId
    operation: Literal["ADD", "REMOVE"]


class SetRoleData(Data):
    chatId: EntityId
    userId: EntityId
    role: Literal["admin", "member"]


class UpdateChatData(Data):
    chatId: EntityId
    name: Annotated[Text, Field(min_length=1, max_length=GROUP_NAME_MAX_LENGTH)]


class ReplyTo(Data):
    """A reply with its quote: the server never reads text, so the excerpt comes from the
    sender's client; the server adds the quoted message's sender."""

    messageId: EntityId
    excerpt: Text = Field(
        description="The start of the quoted text (at most PIGEON_REPLY_EXCERPT_MAX_LENGTH, 200)."
    )


class ForwardedFrom(Data):
    """The message this one forwards: one the sender can see (a member of its chat)."""

    chatId: EntityId
    messageId: EntityId


class SendMessageData(Data):
    chatId: EntityId | None = Field(None, description="The chat; or give `listId`.")
    clientMessageId: Annotated[Text, Field(min_length=1, max_length=64)]
    message: Text = ""
    attachments: list[EntityId] = Field(default_factory=list, max_length=10)
    replyTo: EntityId | ReplyTo | None = None
    forwardedFrom: ForwardedFrom | None = None
    mentions: list[EntityId] = Field(
        default_factory=list, description="User ids the message mentions, each a member."
    )
    # Broadcast lists (issue 19): one 1:1 message to each recipient, instead of a chat.
    listId: EntityId | None = Field(None, description="A broadcast list, instead of `chatId`.")

    @model_validator(mode="after")
    def _one_destination(self) -> SendMessageData:
        if (self.chatId is None) == (self.listId is None):
            raise ValueError("give exactly one of chatId and listId")
        if self.listId is not None and self.replyTo is not None:
            raise ValueError("a broadcast cannot reply to a message (replyTo)")
        if self.listId is not None and self.forwardedFrom is not None:
            raise ValueError("a broadcast cannot forward a message (forwardedFrom)")
        if self.listId is not None and self.mentions:
            raise ValueError("a broadcast cannot mention anyone (mentions)")
        return self


class MuteChatData(Data):
    chatId: EntityId
    duration: Literal["8h", "1w", "always", "off"] = Field(
        description="No pushes from the chat (except mentions) for 8 hours, a week, or "
        "always; off unmutes it."
    )


class AckData(Data):
    upTo: Seq


class MarkReadData(Data):
    chatId: EntityId
    upToSeq: Seq


class TypingData(Data):
    chatId: EntityId
    state: Literal["composing", "paused"]


class ChatRef(Data):
    chatId: EntityId


class SetPresenceData(Data):
    state: Literal["online", "offline"]


class GetPresenceData(Data):
    userIds: list[EntityId] = Field(min_length=1, max_length=256)


class CreateAttachmentData(Data):
    body: str = Field(min_length=1, description="The file, base64.")
    hash: str = Field(min_length=64, max_length=64, description="SHA-256, hexadecimal.")
    mimeType: str | None = Field(None, max_length=127, description="Ignored: types are sniffed.")
    fileName: Annotated[Text, Field(max_length=1024)] = "file"


class ReactData(Data):
    chatId: EntityId
    messageId: EntityId
    emoji: Text = Field(
        max_length=64,
        description="One emoji (a single grapheme cluster); empty removes your reaction.",
    )


class EditMessageData(Data):
    chatId: EntityId
    messageId: EntityId
    text: Text = Field(description="The new text, in full.")


class DeleteMessageData(Data):
    chatId: EntityId
    messageId: EntityId


class SetDisappearingData(Data):
    chatId: EntityId
    seconds: int = Field(
        ge=0,
        le=MAX_SAFE_INTEGER,
        description="0 (off), 86400 (24 hours), 604800 (7 days) or 7776000 (90 days).",
    )


def _command(name: str, data: type[BaseModel], optional: bool = False) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "id": (RequestId | None, None),
        "type": (Literal[name], ...),
        "data": (data, data() if optional else ...),
    }
    return create_model(
        f"{name[0].upper()}{name[1:]}Command",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


COMMANDS: dict[str, type[BaseModel]] = {
    "auth": _command("auth", AuthData),
    "ping": _command("ping", Empty, optional=True),
    "createChat": _command("createChat", CreateChatData),
    "modifyChatParticipants": _command("modifyChatParticipants", ModifyChatParticipantsData),
    "setRole": _command("setRole", SetRoleData),
    "updateChat": _command("updateChat", UpdateChatData),
    "sendMessage": _command("sendMessage", SendMessageData),
    "ack": _command("ack", AckData),
    "markRead": _command("markRead", MarkReadData),
    "typing": _command("typing", TypingData),
    "getChats": _command("getChats", Empty, optional=True),
    "getChat": _command("getChat", ChatRef),
    "setPresence": _command("setPresence", SetPresenceData),
    "muteChat": _command("muteChat", MuteChatData),
    "getPresence": _command("getPresence", GetPresenceData),
    "createAttachment": _command("createAttachment", CreateAttachmentData),
    "react": _command("react", ReactData),
    "editMessage": _command("editMessage", EditMessageData),
    "deleteMessage": _command("deleteMessage", DeleteMessageData),
    "setDisappearing": _command("setDisappearing", SetDisappearingData),
}


class Envelope(BaseModel):
    """Just enough of a frame to answer it when the rest is invalid."""

    id: RequestId | None = None
    type: str | None = None


class FrameError(Exception):
    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


# The tagged union is built from COMMANDS, so the two cannot disagree.
CommandUnion: Any = Annotated[
    Union[tuple(COMMANDS.values())],  # noqa: UP007
    Field(discriminator="type"),
]
_commands: TypeAdapter[Any] = TypeAdapter(CommandUnion)
_envelope = TypeAdapter(Envelope)


def parse_command(raw: str | bytes) -> Any:
    """Validate one frame; raise FrameError (with the request id, if readable) otherwise."""
    try:
        return _commands.validate_json(raw)
    except ValidationError as exc:
        raise _frame_error(raw, exc) from None


def _frame_error(raw: str | bytes, exc: ValidationError) -> FrameError:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return FrameError("malformed_frame", "The frame is not valid JSON (or nests too deeply).")
    try:
        envelope = _envelope.validate_json(raw)
    except ValidationError:
        envelope = Envelope()
    if first["type"] == "union_tag_invalid" or first["type"] == "union_tag_not_found":
        return FrameError(
            "unknown_command", f"Unknown command type {envelope.type!r}.", envelope.id
        )
    where = ".".join(str(part) for part in first["loc"][1:])
    return FrameError("invalid_frame", f"{where}: {first['msg']}", envelope.id)
