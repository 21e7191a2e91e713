"""The command table: where a frame becomes a service call.

Each command the protocol knows (``frames.COMMANDS``) has a ``Command`` here:
``run`` parses nothing (the frame is already validated) and calls one service,
returning an awaitable of the service's result; ``answer`` makes that result
the answer's ``data`` (``gateway/events.py``). The connection treats every
command alike: it runs it, and answers when the awaitable is done. The hot
commands (``sendMessage``, ``markRead``) return the group committer's future,
so they are answered from a callback without a task of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pigeon.domain.chats import Role
from pigeon.domain.push import ChatMute, MuteDuration
from pigeon.gateway import events
from pigeon.services.changes import DeleteMessage, EditMessage, React
from pigeon.services.messaging import Ack, MarkRead, SendMessage

if TYPE_CHECKING:
    from pigeon.gateway.connection import DeviceConnection

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Command:
    run: Callable[[DeviceConnection, Any], Awaitable[Any]]
    answer: Callable[[Any], Any]


def _done(value: T) -> asyncio.Future[T]:
    """An awaitable that is already answered, for commands with nothing to wait for."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as lost


def ping(conn: DeviceConnection, data: Any) -> Awaitable[None]:
    return _done(None)


def send_message(conn: DeviceConnection, data: Any) -> Awaitable[Any]:
    if data.listId is not None:
        return conn.services.broadcasts.send(
            conn.principal, data.listId, data.clientMessageId, data.message, list(data.attachments)
        )
    reply, excerpt = data.replyTo, None
    if reply is not None and not isinstance(reply, str):  # a reply with its quote
        reply, excerpt = reply.messageId, reply.excerpt
    forwarded = data.forwardedFrom
    return conn.services.messaging.send(
        SendMessage(
            principal=conn.principal,
            chat_id=data.chatId,
            client_message_id=data.clientMessageId,
            body=data.message,
            attachments=list(data.attachments),
            reply_to=reply,
            reply_excerpt=excerpt,
            forwarded_from=(forwarded.chatId, forwarded.messageId) if forwarded else None,
            mentions=tuple(data.mentions),
        )
    )


def ack(conn: DeviceConnection, data: Any) -> Awaitable[int]:
    """Answered at once: the room it frees is usable now, and its delete joins the next
    batch. If that batch fails the entries stay queued and come again after a
    reconnect: at least once, never lost."""
    queue = conn.queued
    if queue.acked(data.upTo):
        if queue.waiting:  # events waited for this room
            conn.request_pump()
        conn.services.messaging.ack(Ack(conn.principal, data.upTo)).add_done_callback(
            _ignore_outcome
        )
    return _done(queue.last_acked)


def mark_read(conn: DeviceConnection, data: Any) -> Awaitable[Any]:
    return conn.services.messaging.mark_read(MarkRead(conn.principal, data.chatId, data.upToSeq))


async def create_chat(conn: DeviceConnection, data: Any) -> tuple[str, bool]:
    return await conn.services.chats.create_chat(conn.principal, list(data.participants), data.name)


async def modify_participants(conn: DeviceConnection, data: Any) -> None:
    chats = conn.services.chats
    if data.operation == "ADD":
        await chats.add_member(conn.principal, data.chatId, data.userId)
    else:
        await chats.remove_member(conn.principal, data.chatId, data.userId)


async def set_role(conn: DeviceConnection, data: Any) -> None:
    await conn.services.chats.set_role(conn.principal, data.chatId, data.userId, Role(data.role))


async def update_chat(conn: DeviceConnection, data: Any) -> None:
    await conn.services.chats.rename(conn.principal, data.chatId, data.name)


async def get_chats(conn: DeviceConnection, data: Any) -> Any:
    return await conn.services.chats.list_chats(conn.principal)


async def get_chat(conn: DeviceConnection, data: Any) -> Any:
    return await conn.services.chats.get_chat(conn.principal, data.chatId)


async def typing(conn: DeviceConnection, data: Any) -> None:
    await conn.services.presence.typing(conn.principal, data.chatId, data.state == "composing")


async def set_presence(conn: DeviceConnection, data: Any) -> bool:
    online: bool = data.state == "online"
    await conn.services.presence.announce(conn.principal, online=online)
    return online


async def get_presence(conn: DeviceConnection, data: Any) -> Any:
    return await conn.services.presence.query(conn.principal, data.userIds)


async def create_attachment(conn: DeviceConnection, data: Any) -> Any:
    return await conn.services.media.upload_inline(
        conn.principal, data.body, data.hash, data.fileName
    )


def react(conn: DeviceConnection, data: Any) -> Awaitable[Any]:
    return conn.services.messaging.change(
        React(conn.principal, data.chatId, data.messageId, data.emoji)
    )


def edit_message(conn: DeviceConnection, data: Any) -> Awaitable[Any]:
    return conn.services.messaging.change(
        EditMessage(conn.principal, data.chatId, data.messageId, data.text)
    )


def delete_message(conn: DeviceConnection, data: Any) -> Awaitable[Any]:
    return conn.services.messaging.change(
        DeleteMessage(conn.principal, data.chatId, data.messageId)
    )


async def set_disappearing(conn: DeviceConnection, data: Any) -> None:
    await conn.services.chats.set_disappearing(conn.principal, data.chatId, data.seconds)


async def mute_chat(conn: DeviceConnection, data: Any) -> tuple[str, ChatMute | None]:
    duration = None if data.duration == "off" else MuteDuration(data.duration)
    return data.chatId, await conn.services.notifications.mute(
        conn.principal, data.chatId, duration
    )


# Every command a connection accepts once authenticated ("auth" is the endpoint's).
COMMANDS: dict[str, Command] = {
    "ping": Command(ping, events.pong_data),
    "sendMessage": Command(send_message, events.send_data),
    "ack": Command(ack, events.ack_data),
    "markRead": Command(mark_read, events.read_data),
    "createChat": Command(create_chat, events.created_chat_data),
    "modifyChatParticipants": Command(modify_participants, events.status_data),
    "setRole": Command(set_role, events.status_data),
    "updateChat": Command(update_chat, events.status_data),
    "getChats": Command(get_chats, events.chats_data),
    "getChat": Command(get_chat, events.chat_data),
    "typing": Command(typing, events.nothing),
    "setPresence": Command(set_presence, events.presence_state_data),
    "getPresence": Command(get_presence, events.presence_data),
    "createAttachment": Command(create_attachment, events.attachment_data),
    "react": Command(react, events.change_data),
    "editMessage": Command(edit_message, events.change_data),
    "deleteMessage": Command(delete_message, events.change_data),
    "setDisappearing": Command(set_disappearing, events.status_data),
    "muteChat": Command(mute_chat, events.mute_data),
}
